"""E1 under pre-registration v3: midpoint regions, C1-sharp with an interior L* and a
margin of 0.1, C2 as rank agreement against the exact permutation null, the stimulus
gate. Planted nulls and effects by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from listenkit.experiments.e1 import relative_region
from listenkit.stats import RatioOfMeans, resample_counts, split_halves
from listenkit.stats.profile_correlation import spearman_permutation
from listenkit.stats.sharpness import peak_comparisons


@pytest.mark.parametrize(
    ("n_layers", "end", "midpoint"),
    [(4, [2], [2, 3]), (6, [2, 3, 4], [3, 4]), (12, [4, 5, 6, 7, 8], [5, 6, 7, 8])],
)
def test_midpoint_regions_are_symmetric(n_layers, end, midpoint):
    third = [1 / 3, 2 / 3]
    assert relative_region(third, n_layers) == end  # v2
    region = relative_region(third, n_layers, "midpoint")
    assert region == midpoint
    assert [n_layers + 1 - la for la in reversed(region)] == region  # symmetric


def _c1_sharp(rng, means, n=128, resamples=400):
    """One dataset: per-pair effects around ``means`` (sd .6 per pair), L* on half A,
    the v3 comparison on half B (97.5%, margin .1, inclusive) and the interior rule."""
    x = np.asarray(means) + 0.6 * rng.standard_normal((n, len(means)))
    in_a = split_halves([f"{rng.integers(1e12)}-{i}" for i in range(n)], salt="sim")
    a, b = (
        RatioOfMeans(x[in_a], np.ones(in_a.sum())),
        RatioOfMeans(x[~in_a], np.ones((~in_a).sum())),
    )
    peak = int(np.argmax(a.value()))
    result = peak_comparisons(peak, b.value(), b.resampled, resample_counts(b.n, resamples, rng),
                              range(1, len(means) + 1), threshold=0.1, inclusive=True,
                              confidence=0.975)  # fmt: skip
    interior = 0 < peak < len(means) - 1
    return bool(result["sharp"]) and interior


def test_c1_sharp_at_the_margin_is_supported_at_most_at_the_nominal_rate():
    """Layers 2 and 3 differ by exactly the margin (0.1): 'sharp' in at most 2.5% +
    Monte Carlo slack of 300 datasets."""
    rng = np.random.default_rng(1)
    rate = np.mean([_c1_sharp(rng, [0.1, 0.6, 0.5, 0.1]) for _ in range(300)])
    assert rate <= 0.045, rate


def test_c1_sharp_finds_an_interior_peak_and_refuses_a_monotone_curve():
    rng = np.random.default_rng(2)
    assert np.mean([_c1_sharp(rng, [0.1, 0.9, 0.4, 0.2]) for _ in range(50)]) >= 0.9
    assert not any(_c1_sharp(rng, [0.1, 0.3, 0.6, 0.9]) for _ in range(30))  # last layer


def test_spearman_permutation_is_exact():
    result = spearman_permutation(np.array([1, 2, 3, 4.0]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert result["rho"] == pytest.approx(1.0) and result["p_value"] == pytest.approx(1 / 24)
    reverse = spearman_permutation(np.array([1, 2, 3, 4.0]), np.array([0.4, 0.3, 0.2, 0.1]))
    assert reverse["p_value"] == pytest.approx(1.0)
    flat = spearman_permutation(np.array([1, 2, 3, 4.0]), np.ones(4))
    assert flat["p_value"] is None


def test_spearman_permutation_null_is_uniform_on_unrelated_profiles():
    rng = np.random.default_rng(3)
    ps = [spearman_permutation(rng.random(6), rng.random(6))["p_value"] for _ in range(300)]
    assert np.mean(np.asarray(ps) <= 0.05) <= 0.08


def test_dtw_path_undoes_a_known_time_stretch():
    from listenkit.stimuli.time_align import dtw_path

    a = np.sin(np.linspace(0, 6, 40))[:, None] * np.array([[1.0, -0.5]])
    b = np.repeat(a, 2, axis=0)  # every frame twice: b is a at half speed
    path = dtw_path(a, b)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (39, 79)
    assert all(abs(i - j // 2) <= 1 for i, j in path)


def test_aligned_voice_pairs_are_equal_length_and_better_aligned():
    """Two real voices (Piper joe; espeak-ng en-gb-scotland warped onto joe's timing):
    equal lengths, equal RMS, and a higher envelope correlation than unwarped."""
    from listenkit.stimuli import TTSUnavailableError
    from listenkit.stimuli.pairs import aligned_voice_pairs
    from listenkit.stimuli.textbank import textbank

    try:
        pairs = aligned_voice_pairs(list(textbank())[200:202])
    except TTSUnavailableError as err:
        pytest.skip(str(err))
    for pair in pairs:
        clean, corrupt = pair.clean.audio, pair.corrupt.audio
        assert clean.shape == corrupt.shape
        rms = [np.sqrt(np.mean(np.asarray(x, float) ** 2)) for x in (clean, corrupt)]
        assert rms[1] == pytest.approx(rms[0], rel=0.02) or np.abs(corrupt).max() == 1.0
        check = pair.meta["alignment"]
        assert check["envelope_correlation"] > check["envelope_correlation_unwarped"]
