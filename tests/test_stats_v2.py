"""Pre-registration v2 statistics: each test fails on the v1 behaviour it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from listenkit.claims.verdicts import holm_adjusted
from listenkit.engine.metrics import normalized_recovery
from listenkit.stats import (
    RatioOfMeans,
    bootstrap_curve,
    bootstrap_grounding,
    cross_fitted_sharpness,
    gc_cross_fitted_sharpness,
    gc_group_difference_test,
    grounding_coefficient,
    max_t_lower_bounds,
    nan_argmax,
    peak_location,
    seeded_generator,
    split_halves,
)

LAYERS = [1, 2, 3, 4]


def test_ratio_of_means_on_a_hand_computed_example():
    # stimulus 1: gap 1, recovers [1, 2]; stimulus 2: gap 3, recovers [3, 0]
    ratio = RatioOfMeans(np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([1.0, 3.0]))
    np.testing.assert_allclose(ratio.value(), [4 / 4, 2 / 4])
    np.testing.assert_allclose(ratio.per_stimulus().mean(axis=0), [1.0, 1.0])  # v1's answer
    curve = bootstrap_curve(ratio, [1, 2], rng=np.random.default_rng(0), n_resamples=200)
    np.testing.assert_allclose(curve.mean, [1.0, 0.5])
    # one resample drawing stimulus 2 twice: (2 * [3, 0]) / (2 * 3)
    np.testing.assert_allclose(ratio.resampled(np.array([[0.0, 2.0]])), [[1.0, 0.0]])


def test_a_small_gap_cannot_dominate_the_curve():
    """v1 divided by each stimulus's own gap: one stimulus at the floor moved the argmax."""
    gaps = np.array([10.0] * 9 + [1.0])
    num = np.outer(gaps, [0.2, 0.8, 0.6, 0.1])
    num[-1] = [0.0, 0.0, 0.0, 9.0]  # the small-gap stimulus "recovers" 9x at layer 4
    ratio = RatioOfMeans(num, gaps)
    assert int(nan_argmax(ratio.value())) == 1  # layer 2, as the 9 large-gap stimuli say
    assert int(nan_argmax(ratio.per_stimulus().mean(axis=0))) == 3  # v1: layer 4


def test_the_floor_is_signed():
    """v1 kept a pair whose corruption *raised* the metric (|gap| >= floor)."""
    source, base = np.array([-10.0, -30.0, -20.0]), np.array([-20.0, -20.0, -20.5])
    patched = np.array([[-15.0], [-25.0], [-20.0]])
    r, included = normalized_recovery(patched, base, source, floor=1.0)
    np.testing.assert_array_equal(included, [True, False, False])  # +10, -10, +0.5
    np.testing.assert_allclose(r[0], [0.5])
    _, mirrored = normalized_recovery(patched, base, source, floor=1.0, direction=-1)
    np.testing.assert_array_equal(mirrored, [False, True, False])


def test_ratio_rejects_non_positive_denominators():
    with pytest.raises(ValueError, match="signed floor"):
        RatioOfMeans(np.ones((2, 3)), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="one denominator per stimulus"):
        RatioOfMeans(np.ones((2, 3)), np.array([1.0]))


def test_ties_go_to_the_lowest_layer_everywhere():
    tied = np.array([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    assert peak_location(tied, LAYERS, rng=np.random.default_rng(0), n_resamples=10).observed == 2
    assert int(nan_argmax(np.array([np.nan, 1.0, 1.0]))) == 1


def test_distinct_keys_give_distinct_streams():
    keys = [
        ("C1", "whisper-tiny.en", "noise", "peak"),
        ("C1", "whisper-base", "noise", "peak"),  # v1: both 'whisper-' -> the same stream
        ("C3", "whisper-base", "conflict", "curves"),
        ("C3", "whisper-base", "conflict-noisy", "curves"),  # v1: both 'conflict'
        ("C3", "whisper-base", "conflict-noisy", "sharpness"),
    ]
    draws = [tuple(seeded_generator(20260226, *k).integers(0, 2**62, size=4)) for k in keys]
    assert len(set(draws)) == len(keys)
    again = tuple(seeded_generator(20260226, *keys[0]).integers(0, 2**62, size=4))
    assert again == draws[0]


def test_split_halves_is_a_fixed_hash_of_the_id():
    ids = [f"pair-{i:03d}" for i in range(200)]
    a = split_halves(ids, salt="s")
    np.testing.assert_array_equal(a, split_halves(ids, salt="s"))
    np.testing.assert_array_equal(a[::-1], split_halves(ids[::-1], salt="s"))  # order-free
    assert 70 < a.sum() < 130
    assert (a != split_halves(ids, salt="other")).any()
    with pytest.raises(ValueError, match="unique"):
        split_halves(["x", "x"], salt="s")


def _sharp_rate(means, n, *, reps=400, sd=0.5, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(reps):
        x = np.asarray(means) + sd * rng.standard_normal((n, len(means)))
        in_a = split_halves([f"d{r}-s{i}" for i in range(n)], salt="simulation")
        hits += bool(cross_fitted_sharpness(x, LAYERS, in_a, rng=rng, n_resamples=1000)["sharp"])
    return hits / reps


@pytest.mark.parametrize("n", [16, 128])
def test_cross_fitted_sharpness_controls_false_positives_when_two_layers_tie(n):
    rate = _sharp_rate([0.5, 0.5, 0.0, 0.0], n)
    print(f"n = {n}: 'sharp' in {rate:.1%} of 400 datasets with two tied layers")
    assert rate <= 0.05


def test_cross_fitted_sharpness_finds_a_real_peak():
    rate = _sharp_rate([0.0, 0.3, 0.8, 0.4], 128)
    print(f"power for a single peak 0.4 above its neighbour, n = 128: {rate:.1%}")
    assert rate >= 0.9


def test_sharpness_is_undefined_with_an_empty_half():
    x = np.ones((6, 4))
    result = cross_fitted_sharpness(x, LAYERS, np.ones(6, bool), rng=np.random.default_rng(0))
    assert result["sharp"] is None and "no stimuli" in result["reason"]


def test_max_t_bounds_are_simultaneous_and_handle_undefined_resamples():
    rng = np.random.default_rng(0)
    observed = np.array([1.0, 2.0])
    boot = observed + rng.normal(0, [0.1, 1.0], size=(5000, 2))
    lower, c = max_t_lower_bounds(observed, boot)
    assert 1.6 < c < 2.3  # between the one-sided 95% z (1.64) and Bonferroni for 2 (1.96)
    np.testing.assert_allclose(lower, observed - c * np.array([0.1, 1.0]), atol=0.05)
    boot[:400, 0] = np.nan  # 8% undefined: more than the 5% tail
    lower, c = max_t_lower_bounds(observed, boot)
    assert c == np.inf and np.isneginf(lower).all()


def test_gc_positive_part_keeps_gc_in_unit_interval():
    np.testing.assert_allclose(grounding_coefficient([0.5], [-0.3]), [2.5])  # v1 formula
    np.testing.assert_allclose(grounding_coefficient([0.5], [-0.3], positive_part=True), [1.0])
    assert np.isnan(grounding_coefficient([-0.5], [0.02], positive_part=True)[0])


def test_gc_statistics_take_ratios_and_are_undefined_on_empty_groups():
    rng = np.random.default_rng(3)
    n = 12
    gaps = rng.uniform(1, 5, n)
    da = RatioOfMeans(np.outer(gaps, [0.1, 0.2, 0.9]), gaps)
    dt = RatioOfMeans(np.outer(gaps, [0.9, 0.1, 0.1]), gaps)
    curves = bootstrap_grounding(da, dt, [1, 2, 3], rng=rng, n_resamples=300)
    np.testing.assert_allclose(curves.gc, [0.1, 2 / 3, 0.9])
    assert curves.l_star == 3
    result = gc_cross_fitted_sharpness(
        da, dt, [1, 2, 3], split_halves([str(i) for i in range(n)], salt="x"), rng=rng,
        n_resamples=300,
    )  # fmt: skip
    assert result["L_star"] == 3
    test = gc_group_difference_test(da, dt, np.zeros(n, bool), 2, rng=rng, n_permutations=100)
    assert test["p_value"] == 1.0 and "undefined" in test["reason"]


def test_holm_within_a_family_matches_a_hand_computation():
    family = {"tiny-conflict": 0.01, "tiny-noisy": 0.04, "base-conflict": 0.03,
              "base-noisy": 0.005}  # fmt: skip
    # 0.005 * 4 = .02, 0.01 * 3 = .03, 0.03 * 2 = .06, 0.04 -> .06 (monotone)
    expected = {"tiny-conflict": 0.03, "tiny-noisy": 0.06, "base-conflict": 0.06,
                "base-noisy": 0.02}  # fmt: skip
    for cell, p in expected.items():
        adjusted, size = holm_adjusted(family, cell)
        assert adjusted == pytest.approx(p) and size == 4
    assert holm_adjusted({"only": 0.01}, "only") == (pytest.approx(0.01), 1)
