"""Statistics of the grounding coefficient: definitions, undefined layers, tests' power."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from listenkit.engine.metrics import grounding_coefficient
from listenkit.stats.grounding import (
    bootstrap_grounding,
    drop_and_recover,
    gc_group_difference_test,
    nan_argmax,
    probability_drop_and_recover,
)


def _data(n=40, seed=0, da_means=(0.1, 0.6, 0.2, 0.1), dt_means=(0.9, 0.4, 0.8, 0.0)):
    rng = np.random.default_rng(seed)
    da = np.asarray(da_means) + 0.05 * rng.standard_normal((n, len(da_means)))
    dt = np.asarray(dt_means) + 0.05 * rng.standard_normal((n, len(dt_means)))
    return da, dt


def test_gc_is_the_ratio_of_means_not_the_mean_of_ratios():
    da = np.array([[1.0], [0.0]])
    dt = np.array([[1.0], [3.0]])
    curves = bootstrap_grounding(da, dt, [1], rng=np.random.default_rng(0), n_resamples=100)
    assert curves.gc[0] == pytest.approx(0.5 / (0.5 + 2.0))  # not mean(1/2, 0/3) = 0.25


def test_gc_is_undefined_below_the_minimum_total_and_never_a_peak():
    da = np.array([[0.01, 0.5, 0.02], [0.01, 0.5, 0.0]])
    dt = np.array([[0.01, 0.5, 0.01], [0.02, 0.5, 0.0]])
    curves = bootstrap_grounding(da, dt, [1, 2, 3], rng=np.random.default_rng(0), n_resamples=200)
    assert np.isnan(curves.gc[0]) and np.isnan(curves.gc[2])
    assert curves.l_star == 2
    assert set(curves.l_star_samples) == {2}
    records = curves.to_records()
    assert records[0]["gc"] is None and records[1]["gc"] == pytest.approx(0.5)


def test_all_undefined_gives_no_peak():
    zeros = np.zeros((5, 3))
    curves = bootstrap_grounding(
        zeros, zeros, [1, 2, 3], rng=np.random.default_rng(0), n_resamples=50
    )
    assert curves.l_star == 0 and set(curves.l_star_samples) == {0}


def test_nan_argmax():
    values = np.array([[np.nan, 1.0, 3.0], [np.nan, np.nan, np.nan], [2.0, np.nan, 1.0]])
    assert nan_argmax(values).tolist() == [2, -1, 0]


def test_bootstrap_is_deterministic_and_cis_contain_the_estimate():
    da, dt = _data()
    a = bootstrap_grounding(da, dt, [1, 2, 3, 4], rng=np.random.default_rng(5), n_resamples=500)
    b = bootstrap_grounding(da, dt, [1, 2, 3, 4], rng=np.random.default_rng(5), n_resamples=500)
    assert a.to_records() == b.to_records()
    assert np.all(a.da_low <= a.da_mean) and np.all(a.da_mean <= a.da_high)
    defined = np.isfinite(a.gc)
    assert np.all(a.gc_low[defined] <= a.gc[defined] + 1e-12)
    assert np.all(a.gc[defined] <= a.gc_high[defined] + 1e-12)


def test_group_difference_test_has_power_and_keeps_its_level():
    rng = np.random.default_rng(3)
    da, dt = _data(n=60)
    in_group = np.zeros(60, dtype=bool)
    in_group[:15] = True
    lowered = da.copy()
    lowered[in_group, 1] -= 0.4  # gc at layer 2 much lower in the group
    power = gc_group_difference_test(lowered, dt, in_group, 1, rng=rng, n_permutations=2000)
    assert power["p_value"] < 0.01 and power["observed"] > 0
    # no difference: p is roughly uniform; over 40 null datasets about 5% fall below 0.05
    p_values = [
        gc_group_difference_test(*_data(n=60, seed=s), in_group, 1, rng=rng, n_permutations=200)[
            "p_value"
        ]
        for s in range(40)
    ]
    assert np.mean(np.asarray(p_values) < 0.05) <= 0.2
    assert 0.3 < np.mean(p_values) < 0.7


def test_group_difference_with_an_empty_group_is_untestable():
    da, dt = _data(n=10)
    result = gc_group_difference_test(
        da, dt, np.zeros(10, dtype=bool), 1, rng=np.random.default_rng(0), n_permutations=50
    )
    assert result["p_value"] == 1.0 and result["n_group"] == 0


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([0.8, 0.5, 0.9], True),
        ([0.8, 0.75, 0.9], False),  # drop of 0.05 only
        ([0.8, 0.5, 0.55], False),  # no recovery
        ([0.5, 0.8, 0.9], False),  # no drop
        ([0.8, np.nan, 0.5, 0.9], True),  # undefined layers are skipped
        ([0.9, 0.2, 0.1, 0.3], True),  # l1 = 1, l2 = 3, l3 = 4
        ([np.nan, np.nan, np.nan], False),
    ],
)
def test_drop_and_recover(curve, expected):
    assert drop_and_recover(np.asarray(curve))[0] == expected


def test_probability_drop_and_recover_on_clear_and_absent_patterns():
    rng = np.random.default_rng(0)
    da, dt = _data(da_means=(0.8, 0.3, 0.8), dt_means=(0.2, 0.7, 0.2))  # gc 0.8, 0.3, 0.8
    assert probability_drop_and_recover(da, dt, rng=rng, n_resamples=500) == 1.0
    flat_da, flat_dt = _data(da_means=(0.5, 0.5, 0.5), dt_means=(0.5, 0.5, 0.5))
    assert probability_drop_and_recover(flat_da, flat_dt, rng=rng, n_resamples=500) == 0.0


@settings(max_examples=30, deadline=None)
@given(
    da=arrays(np.float64, (6, 3), elements=st.floats(0, 1)),
    dt=arrays(np.float64, (6, 3), elements=st.floats(0, 1)),
)
def test_gc_of_nonnegative_shares_is_in_the_unit_interval(da, dt):
    gc = grounding_coefficient(da.mean(axis=0), dt.mean(axis=0))
    defined = np.isfinite(gc)
    assert np.all((gc[defined] >= 0) & (gc[defined] <= 1))
    assert np.all(defined == (da.mean(axis=0) + dt.mean(axis=0) >= 0.05))


def test_bad_shapes_and_nans_are_rejected():
    with pytest.raises(ValueError, match="one shape"):
        bootstrap_grounding(
            np.zeros((3, 2)), np.zeros((3, 3)), [1, 2], rng=np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_grounding(
            np.full((3, 2), np.nan), np.zeros((3, 2)), [1, 2], rng=np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="no stimuli"):
        bootstrap_grounding(
            np.zeros((0, 2)), np.zeros((0, 2)), [1, 2], rng=np.random.default_rng(0)
        )
