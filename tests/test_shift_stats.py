"""The E3 statistic: centre of mass of a recovery curve and its paired cluster bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from listenkit.stats import RatioOfMeans
from listenkit.stats.shift import centre_of_mass, paired_shift


def test_centre_of_mass_by_hand():
    assert centre_of_mass(np.array([0.0, 1.0, 0.0, 0.0])) == pytest.approx(2 / 4)
    assert centre_of_mass(np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx((1 + 2) / (4 * 2))
    # the negative part is dropped: (2 * 0.5 + 4 * 0.5) / (4 * 1)
    assert centre_of_mass(np.array([-3.0, 0.5, -1.0, 0.5])) == pytest.approx(3 / 4)
    assert np.isnan(centre_of_mass(np.array([-1.0, 0.0, -0.2])))
    rows = centre_of_mass(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(rows, [1.0, 1 / 3])


def _curves(rng, n, peak, layers=4, noise=0.15):
    curve = np.zeros(layers)
    curve[peak - 1] = 0.6
    return curve + noise * rng.standard_normal((n, layers))


def test_a_planted_shift_from_layer_2_to_3_is_found():
    rng = np.random.default_rng(0)
    before, after = _curves(rng, 24, 2), _curves(rng, 24, 3)
    test = paired_shift(before, after, rng=np.random.default_rng(1), n_resamples=2000)
    assert test.p_delta_positive >= 0.95
    assert (test.l_star_before, test.l_star_after) == (2, 3)
    assert test.delta > 0 and test.delta_ci95[0] > 0
    assert test.p_l_star_later > 0.8


def test_no_shift_is_called_a_shift_at_most_about_5_percent_of_the_time():
    """Independent draws from one distribution: 'supported' (P(Delta > 0) >= 0.95) in
    at most 5% of 400 datasets, up to binomial noise (2 standard errors: 7.2%)."""
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(400):
        before, after = _curves(rng, 24, 2), _curves(rng, 24, 2)
        test = paired_shift(before, after, rng=rng, n_resamples=400)
        hits += test.p_delta_positive >= 0.95
    assert hits / 400 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 400)


def test_clusters_resample_together():
    """Clusters of identical rows resample exactly like their single rows (same stream)."""
    rng = np.random.default_rng(3)
    before, after = _curves(rng, 8, 2), _curves(rng, 8, 3)
    single = paired_shift(before, after, rng=np.random.default_rng(9), n_resamples=300)
    tripled = paired_shift(
        np.repeat(before, 3, axis=0),
        np.repeat(after, 3, axis=0),
        rng=np.random.default_rng(9),
        n_resamples=300,
        clusters=[f"s{i}" for i in range(8) for _ in range(3)],
    )
    np.testing.assert_allclose(single.delta_samples, tripled.delta_samples, atol=1e-12)
    assert tripled.n_clusters == 8 and tripled.n_stimuli == 24


def test_ratio_of_means_is_recomputed_per_resample():
    num_b = np.array([[0.0, 2.0, 0.0], [0.0, 1.0, 0.0]])
    num_a = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    den = np.array([2.0, 1.0])
    test = paired_shift(RatioOfMeans(num_b, den), RatioOfMeans(num_a, den),
                        rng=np.random.default_rng(0), n_resamples=50)  # fmt: skip
    assert test.com_before == pytest.approx(2 / 3) and test.com_after == pytest.approx(1.0)
    np.testing.assert_allclose(test.delta_samples, 1 / 3)
    assert test.p_delta_positive == 1.0


def test_mismatched_inputs_are_errors():
    with pytest.raises(ValueError, match="same stimuli"):
        paired_shift(np.zeros((3, 4)), np.zeros((4, 4)), rng=np.random.default_rng(0),
                     n_resamples=10)  # fmt: skip
    with pytest.raises(ValueError, match="cluster label"):
        paired_shift(np.zeros((3, 4)), np.zeros((3, 4)), rng=np.random.default_rng(0),
                     n_resamples=10, clusters=["a", "b"])  # fmt: skip
