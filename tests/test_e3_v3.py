"""E3 v3 (issue 26): the matched readout, the readout null, seeds, controls, disjoint noise."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

from listenkit.analyses.adaptation.lora import LoraSpec, adapted_model, attach_lora
from listenkit.analyses.adaptation.readout import pooled_sweep
from listenkit.analyses.adaptation.training import Recipe, train_probes
from listenkit.experiments import e3
from listenkit.planted.encoder import planted_model, planted_pairs
from listenkit.stats import RatioOfMeans
from listenkit.stats.seeded_shift import curve_shape, flat_com, seeded_shift
from listenkit.stimuli.pairs import noise_pairs
from tests.test_adaptation import _pairs, _random_model, _utterances

PREREG = tomllib.loads(Path("claims/preregistration.toml").read_text())
RECIPE = Recipe(lr=1e-2, head_lr=3e-2, steps=12, batch_size=4, seed=3, eval_every=6)


def _curve(sweep) -> RatioOfMeans:
    return RatioOfMeans(sweep.patched - sweep.base[:, None], sweep.source - sweep.base)


@pytest.fixture(scope="module")
def probed():
    """A tiny random Whisper, 8 two-class pairs swept once, probes with seeds 3..9."""
    model = _random_model()
    train, val = _utterances(16), _utterances(4, seed=1)
    pairs = _pairs(_utterances(16, seed=2))
    probes = train_probes(model, train, val, RECIPE, n_classes=2, seeds=range(3, 10))
    sweep = pooled_sweep(model, pairs, site="encoder.block_write")
    return model, train, val, pairs, sweep, [head for head, _ in probes]


def test_readout_null_on_a_planted_encoder_holds_a_fresh_probes_delta(probed):
    """Probes 1-4 make the null; a probe it never saw (seed 9) differs from probe 0 by a
    Delta inside the null's own 95% interval; the same encoder read twice gives 0."""
    _, _, _, _, sweep, heads = probed
    curves = [_curve(sweep.read(h)) for h in heads]
    nulls = [curves[:5]]
    fresh = seeded_shift(curves[0], [curves[6]], null_groups=nulls, n_resamples=2000,
                         rng=np.random.default_rng(0))  # fmt: skip
    low, high = fresh.null_interval
    assert low < high
    assert low <= fresh.delta <= high
    assert fresh.null_q95 > 0 and low == pytest.approx(-high)  # symmetric
    same = seeded_shift(curves[0], [curves[0]], null_groups=nulls, n_resamples=500,
                        rng=np.random.default_rng(0))  # fmt: skip
    assert same.delta == 0.0 and same.margin < 0


def test_matched_probe_on_an_unadapted_encoder_reproduces_the_before_curve(probed):
    """A zero-step adapter merged into the model, probed by the same recipe and seed:
    the same curve, bit for bit."""
    model, train, val, pairs, sweep, heads = probed
    unmoved = adapted_model(model, attach_lora(model, LoraSpec(r=4, alpha=8), seed=0), name="0")
    seen: list[tuple[int, int]] = []
    ((head, _),) = train_probes(
        unmoved, train, val, RECIPE, n_classes=2, seeds=[3],
        feature_progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert torch.equal(head.linear.weight, heads[0].linear.weight)
    assert seen[-1] == (20, 20) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    again = pooled_sweep(unmoved, pairs, site="encoder.block_write").read(head)
    before = sweep.read(heads[0])
    np.testing.assert_array_equal(again.patched, before.patched)
    np.testing.assert_array_equal(again.source, before.source)


def test_a_killed_pooled_sweep_resumes_from_its_batches_bit_for_bit(probed):
    """Killed after its first batch, the sweep keeps that batch in ``done``; the rerun
    computes only the second and equals the uninterrupted sweep exactly (in batches of 4
    or of 8: a pair's runs do not depend on its batch)."""
    model, _, _, pairs, sweep, _ = probed
    done: dict = {}

    def kill(finished, _total):
        if finished == 4:
            raise KeyboardInterrupt

    site = "encoder.block_write"
    with pytest.raises(KeyboardInterrupt):
        pooled_sweep(model, pairs, site=site, batch_size=4, progress=kill, done=done)
    assert sorted(done) == [0] and len(pairs) == 8
    again = pooled_sweep(model, pairs, site=site, batch_size=4, done=done)
    assert sorted(done) == [0, 4]
    for name in ("source", "base", "patched"):
        assert torch.equal(getattr(again, name), getattr(sweep, name))


def _planted_curve(model) -> dict:
    from listenkit import sweep

    result = sweep(model, planted_pairs(2, 12, seed=3), "encoder.block_write", progress=False)
    return {"source": result.clean, "base": result.corrupt, "patched": result.patched,
            "layers": list(result.layers)}  # fmt: skip


def _analysis(curves: dict, null_names=()) -> e3.E3Analysis:
    n = len(curves["before"]["source"])
    return e3.E3Analysis(
        model_name="planted", family="planted", n_layers=4, site="encoder.block_write",
        ids=[f"p{i}" for i in range(n)], clusters=[f"c{i}" for i in range(n)],
        curves={"encoder.block_write": curves}, seeds=1, null_names=list(null_names),
        floor=-np.inf,
        success={"passed": True, "per_adapter": {"control-late-layer": {"passed": True}},
                 "criterion": "-"},
        training={}, secondary={}, manifests={},
    )  # fmt: skip


def _rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def test_controls_on_the_planted_encoder():
    """The planted listen layer at 2 (before) against models that read it through their
    last block (the late-layer control) or their first (the early-layer control): the
    late one passes C4's rule, the early one does not. A late control that did not move
    makes a cell whose C4 fails inconclusive (not one whose C4 holds); an early or
    shuffled control that passes makes any cell inconclusive."""
    before = _planted_curve(planted_model(2))
    late = _planted_curve(planted_model(2, reads=(1, 4, 3, 2)))
    early = _planted_curve(planted_model(2, reads=(2, 1, 3, 4)))
    assert curve_shape(_ratio(late).value())["com"] > curve_shape(_ratio(before).value())["com"]
    curves = {"before": before, "after-0": before, "control-late-layer": late,
              "control-early-layer": early, "control-shuffled-labels": before,
              "control-zero-step": before}  # fmt: skip
    ok = e3.controls(_analysis(curves), {}, _rng, 1000, claim_holds=False)
    assert ok.ok, ok.reason
    assert ok.numbers["control_late_layer_holds"] and not ok.numbers["control_early_layer_holds"]
    assert ok.numbers["control_zero_step_delta"] == 0.0
    blind = _analysis(curves | {"control-late-layer": before})
    stuck = e3.controls(blind, {}, _rng, 1000, claim_holds=False)
    assert not stuck.ok and "positive control" in stuck.reason
    assert e3.controls(blind, {}, _rng, 1000, claim_holds=True).ok
    fooled = _analysis(curves | {"control-shuffled-labels": late})
    wrong = e3.controls(fooled, {}, _rng, 1000, claim_holds=True)
    assert not wrong.ok and "permuted labels" in wrong.reason


def _ratio(arrays) -> RatioOfMeans:
    return RatioOfMeans(
        arrays["patched"] - arrays["base"][:, None], arrays["source"] - arrays["base"]
    )


def test_noise_streams_of_the_three_splits_differ():
    """asr-noise's train, validation and eval noise come from separate seeds: the same
    sentence gets different noise in each split."""
    seeds = PREREG["families"]["asr-noise"]["noise_seeds"]
    assert len(set(seeds.values())) == 3
    text = ["The birch canoe slid on the smooth planks."]
    noises = []
    for part in ("train", "validation", "eval"):
        (pair,) = noise_pairs(text, 0.0, "white", seeds[part])
        noises.append(pair.corrupt.audio - pair.clean.audio)
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.corrcoef(noises[a], noises[b])[0, 1] < 0.1


def _synthetic(rng, shift: float, seed_noise: float, n_seeds: int):
    """32 clusters x 3 pairs, 6 layers; readout noise .03 per layer and probe."""
    clusters = np.repeat(np.arange(32), 3)
    profile = np.array([0.57, 0.5, 0.4, 0.3, 0.25, 0.2])
    gap = rng.lognormal(1, 0.5, clusters.size)
    common = rng.normal(0, 0.15, (32, 6))[clusters] + rng.normal(0, 0.1, (clusters.size, 6))

    def curve(p, extra=0.0):
        noise = common + extra * rng.normal(0, 1, common.shape) + rng.normal(0, 0.03, 6)
        return RatioOfMeans(gap[:, None] * (p + noise), gap)

    before = curve(profile, 0.02)
    moved = (1 - shift) * profile + shift * profile[::-1]  # shift 1: the peak at the last layer
    afters = [curve(moved + rng.normal(0, seed_noise, 6), 0.05) for _ in range(n_seeds)]
    nulls = [[before] + [curve(profile, 0.02) for _ in range(4)]]
    return before, afters, nulls, [str(c) for c in clusters]


@pytest.mark.slow
@pytest.mark.parametrize(("shift", "seed_noise", "low", "high"),
                         [(0.0, 0.1, 0.0, 0.08), (1.0, 0.03, 0.9, 1.0)])  # fmt: skip
def test_seeded_shift_on_a_planted_null_and_a_planted_shift(shift, seed_noise, low, high):
    """120 synthetic cells (3 seeds): C4's rule holds at most about 5% of the time under
    no shift, nearly always when the peak moved to the last layer."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(120):
        before, afters, nulls, clusters = _synthetic(rng, shift, seed_noise, 3)
        r = seeded_shift(before, afters, null_groups=nulls, clusters=clusters, n_resamples=300,
                         rng=rng)  # fmt: skip
        hits += r.holds()
    assert low <= hits / 120 <= high


def test_seeded_shift_undefined_values_count_against():
    """A curve with no positive layer has no CoM: its resamples count as -inf (lower)."""
    before = RatioOfMeans(np.ones((6, 3)), np.ones(6))
    dead = RatioOfMeans(-np.ones((6, 3)), np.ones(6))
    r = seeded_shift(before, [dead], n_resamples=200, rng=np.random.default_rng(0))
    assert np.isnan(r.delta) and r.lower == -np.inf and not r.margin > 0
    assert r.null_q95 == 0.0 and r.null_interval == (0.0, 0.0)
    with pytest.raises(ValueError, match="same stimuli"):
        seeded_shift(before, [RatioOfMeans(np.ones((5, 3)), np.ones(5))], n_resamples=10,
                     rng=np.random.default_rng(0))  # fmt: skip


def test_curve_shape_against_a_flat_curve():
    assert flat_com(6) == pytest.approx(7 / 12)
    flat = curve_shape(np.ones(6))
    assert flat["com_minus_flat"] == pytest.approx(0.0) and flat["peak_to_mean"] == 1.0
    spike = curve_shape(np.array([0, 0, 0, 0, 0, 1.0]))
    assert spike["com"] == 1.0 and spike["peak_to_mean"] == pytest.approx(6.0)


def test_preregistration_v3_e3_is_what_the_code_reads():
    section = PREREG["e3"]
    assert section["site"] == "encoder.block_write"
    assert section["lora_seeds"] == {"smoke": 1, "full": 3}
    assert section["claims"]["C4"]["also"] == [
        "every seed's margin > 0",
        "the after curve lies deeper than a flat one",
    ]
    target = section["controls"]["layer_target"].format(layer=2)  # 3 layers: 0, 1, 2
    peft = attach_lora(_random_model(), LoraSpec(r=2, alpha=4, target=target), seed=0)
    names = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert names and all("blocks.2.attn.value" in n for n in names)


def test_a_control_whose_gap_fails_the_floor_drops_that_pair_from_its_own_test():
    """A control encoder (e.g. LoRA on permuted transcripts) can make a pair's clean -
    corrupt gap <= 0 where before and every after-j pass the floor (the full-profile
    tiny.en asr-noise cell did): its test reads C4's rows minus that pair, says how many,
    and C4's own rows do not change."""
    before = _planted_curve(planted_model(2))
    broken = {k: (np.array(v, copy=True) if k != "layers" else v) for k, v in before.items()}
    broken["source"][0] = broken["base"][0] - 0.5  # the control reverses pair 0's gap
    curves = {"before": before, "after-0": before, "control-shuffled-labels": broken}
    analysis = _analysis(curves)
    n = len(before["source"])
    assert e3.rows_for_test(analysis, analysis.site, ["after-0"]).sum() == n
    assert e3.rows_for_test(analysis, analysis.site, ["control-shuffled-labels"]).sum() == n - 1
    checked = e3.controls(analysis, {}, _rng, 200, claim_holds=False)
    assert checked.numbers["control_shuffled_labels_pairs"] == n - 1
    shapes = e3._shapes(analysis, analysis.site, analysis.included())
    assert shapes["control-shuffled-labels"]["n_pairs"] == n - 1
    assert shapes["before"]["n_pairs"] == n
    # a control with no pair past the floor cannot be tested: said, and the cell is
    # inconclusive (a shuffled control that cannot run cannot show it calls no shift)
    dead = {k: (np.array(v, copy=True) if k != "layers" else v) for k, v in before.items()}
    dead["source"][:] = dead["base"] - 0.5
    untestable = e3.controls(
        _analysis(curves | {"control-shuffled-labels": dead}), {}, _rng, 200, claim_holds=True
    )
    assert untestable.numbers["control_shuffled_labels_pairs"] == 0
    assert untestable.numbers["control_shuffled_labels_holds"] is None
    assert not untestable.ok and "cannot be tested" in untestable.reason
