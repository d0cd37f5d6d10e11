"""Statistics, validated the way scipy validates its own."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from listenkit.stats import (
    bootstrap_argmax,
    bootstrap_curve,
    holm,
    probability_in,
    rank_p_value,
    sequential_p_value,
    stratified_hypergeometric_overlap,
)


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(1)
    x = rng.exponential(size=40)
    curve = bootstrap_curve(x[:, None], [1], rng=np.random.default_rng(2), n_resamples=20_000)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=20_000, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    assert curve.mean[0] == pytest.approx(x.mean())
    assert curve.low[0] == pytest.approx(ref.low, abs=0.02)
    assert curve.high[0] == pytest.approx(ref.high, abs=0.02)


def test_bootstrap_ci_coverage_is_nominal():
    """95% CIs for a known mean cover it in ~95% of 400 synthetic experiments."""
    rng = np.random.default_rng(20260226)
    trials, hits = 400, 0
    for _ in range(trials):
        x = rng.normal(loc=0.3, scale=1.0, size=(60, 1))
        curve = bootstrap_curve(x, [1], rng=rng, n_resamples=1000)
        hits += curve.low[0] <= 0.3 <= curve.high[0]
    # percentile intervals undercover slightly at n=60; reject only a clear miss
    result = sps.binomtest(hits, trials, p=0.95)
    assert result.pvalue > 0.01, (hits, trials)


def test_argmax_distribution_finds_a_clear_peak_and_spreads_on_a_flat_curve():
    rng = np.random.default_rng(0)
    peaked = rng.normal(0, 0.2, size=(30, 6))
    peaked[:, 3] += 1.0
    samples = bootstrap_argmax(peaked, range(1, 7), rng=rng, n_resamples=2000)
    assert probability_in(samples, {4}) == 1.0
    flat = rng.normal(0, 1.0, size=(30, 6))
    spread = bootstrap_argmax(flat, range(1, 7), rng=rng, n_resamples=2000)
    assert max(probability_in(spread, {layer}) for layer in range(1, 7)) < 0.9


def test_holm_matches_a_hand_computed_case():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert holm([0.9, 0.8])[0] == 1.0


def test_sequential_p_run_to_the_end_is_the_full_r_p():
    """Besag & Clifford: when fewer than h draws reach the observed value, the sequential
    p is the full-R rank p; when h do, it stops at the h-th with p = h / n."""
    rng = np.random.default_rng(0)
    null = rng.normal(size=200)
    for observed in (2.5, 1.0, 0.0):
        full = rank_p_value(observed, null[:100])
        seq = sequential_p_value(observed, iter(null), h=1000, max_draws=100)
        assert not seq.stopped_early and seq.p == full and seq.n == 100
    early = sequential_p_value(0.0, iter(null), h=10, max_draws=100)
    assert early.stopped_early and early.hits == 10 and early.p == 10 / early.n
    assert early.n == int(np.flatnonzero(null >= 0.0)[9]) + 1  # stopped at the 10th hit
    drawn = []
    lazy = (drawn.append(x) or x for x in null)
    sequential_p_value(0.0, lazy, h=3, max_draws=100)
    assert len(drawn) < 100  # the remaining random sets are never computed
    with pytest.raises(ValueError, match="ran out"):
        sequential_p_value(9.0, iter(null[:5]), h=2, max_draws=10)


def test_bad_effects_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_curve(np.array([[np.nan, 1.0]]), [1, 2], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="no stimuli"):
        bootstrap_curve(np.zeros((0, 2)), [1, 2], rng=np.random.default_rng(0))


def _strata(top, reference, n_heads):
    layers = sorted({layer for layer, _ in top})
    marked = {layer: sum(1 for ref_layer, _ in reference if ref_layer == layer) for layer in layers}
    drawn = {layer: sum(1 for top_layer, _ in top if top_layer == layer) for layer in layers}
    return [(n_heads, marked[layer], drawn[layer]) for layer in layers]


@pytest.mark.parametrize(
    ("model", "expected", "p"), [("whisper-tiny.en", 5.17, 0.30), ("whisper-base", 3.88, 0.69)]
)
def test_the_layer_stratified_overlap_on_the_published_e4_evidence(model, expected, p):
    """Issue 25's hand computation: conditioning on the layers of the top-8 decoder heads,
    OpenAI's alignment heads overlap them as much as chance would (p .30 and .69), where
    the unstratified hypergeometric gave .0047 and .0185."""
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "results" / "2026-11-28-e4-full"
    evidence = json.loads(
        (folder / "C6-alignment" / f"{model}-noise" / "evidence.json").read_text()
    )
    top = [tuple(h) for h in evidence["top_decoder_heads_half_a"]]
    reference = [tuple(h) for h in evidence["alignment_heads"]]
    n_heads = len(evidence["decoder_effects_half_a"][0])
    overlap = len(set(top) & set(reference))
    tail, mean = stratified_hypergeometric_overlap(overlap, _strata(top, reference, n_heads))
    assert mean == pytest.approx(expected, abs=0.005)
    assert tail == pytest.approx(p, abs=0.005)
    rng = np.random.default_rng(0)  # the same law by simulation
    draws = [sum(rng.hypergeometric(m, n - m, d) for n, m, d in _strata(top, reference, n_heads))
             for _ in range(20_000)]  # fmt: skip
    assert np.mean(np.asarray(draws) >= overlap) == pytest.approx(tail, abs=0.015)


def test_a_planted_overlap_beyond_the_layer_counts_is_significant():
    # 8 heads drawn in one layer of 8, all 8 marked: no evidence; 4 of 4 drawn among 4 of 16
    assert stratified_hypergeometric_overlap(8, [(8, 8, 8)])[0] == pytest.approx(1.0)
    tail, _ = stratified_hypergeometric_overlap(4, [(16, 4, 4)])
    assert tail == pytest.approx(1 / 1820)  # C(16, 4)
