"""Noise generation and exact-SNR mixing."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from listenkit import AudioError
from listenkit.stimuli import make_noise, mix_at_snr, speech_span
from listenkit.stimuli.noise import pink_noise


def _speechlike(n: int, seed: int) -> np.ndarray:
    """Silence, a burst of modulated tone + noise, silence."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=np.float32)
    start, stop = n // 5, 4 * n // 5
    t = np.arange(stop - start) / 16_000
    burst = np.sin(2 * np.pi * 180 * t) * (
        1 + np.sin(2 * np.pi * 3 * t)
    ) + 0.3 * rng.standard_normal(t.size)
    out[start:stop] = 0.1 * burst
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(4_000, 40_000),
    seed=st.integers(0, 2**32 - 1),
    snr=st.floats(-20, 30, allow_nan=False),
    kind=st.sampled_from(["white", "pink"]),
)
def test_snr_is_exact_over_the_speech_span(n, seed, snr, kind):
    speech = _speechlike(n, seed)
    noise = make_noise(kind, n, np.random.default_rng(seed))
    mixture, measured = mix_at_snr(speech, noise, snr)
    span = speech_span(speech)
    residual = mixture.astype(np.float64) - speech
    independent = 10 * np.log10(
        np.mean(speech[span].astype(np.float64) ** 2) / np.mean(residual[span] ** 2)
    )
    assert abs(independent - snr) <= 0.05
    assert abs(measured - snr) <= 0.05
    assert mixture.dtype == np.float32


def test_speech_span_excludes_silence():
    speech = _speechlike(16_000, 0)
    span = speech_span(speech)
    assert 3_000 <= span.start <= 3_200
    assert 12_800 <= span.stop <= 13_200


def test_noise_is_deterministic_per_seed():
    a = make_noise("white", 1000, np.random.default_rng([7, 3]))
    b = make_noise("white", 1000, np.random.default_rng([7, 3]))
    c = make_noise("white", 1000, np.random.default_rng([7, 4]))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pink_noise_has_a_falling_spectrum():
    x = pink_noise(1 << 16, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(x)) ** 2
    low, high = power[10:100].mean(), power[10_000:11_000].mean()
    assert low > 50 * high  # 1/f: ~100x between bins ~50 and ~10,500


def test_all_silent_speech_has_no_snr():
    with pytest.raises(AudioError, match="SNR"):
        mix_at_snr(np.zeros(1000, np.float32), np.ones(1000), 0.0)


def test_unknown_noise_and_babble_without_clips_are_errors():
    with pytest.raises(ValueError, match="unknown noise"):
        make_noise("brown", 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="real speech clips"):
        make_noise("babble", 10, np.random.default_rng(0))
