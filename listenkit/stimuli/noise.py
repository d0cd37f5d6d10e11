"""Seeded noise and mixing at an exact signal-to-noise ratio.

SNR is measured over the *speech span* (first to last 25 ms frame whose RMS is
within 35 dB of the loudest frame), so leading and trailing silence do not
dilute the speech power:

    SNR_dB = 10 log10( mean(s[span]^2) / mean(n[span]^2) )

``mix_at_snr`` scales the noise so that this holds exactly (up to float32
rounding of the stored mixture).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from listenkit.models.audio import AudioError, as_waveform

__all__ = [
    "NOISE_KINDS",
    "babble_noise",
    "fit_to_unit_range",
    "make_noise",
    "measure_snr",
    "mix_at_snr",
    "pink_noise",
    "speech_span",
    "white_noise",
]

NOISE_KINDS = ("white", "pink", "babble")
FRAME = 400  # 25 ms at 16 kHz
SPAN_THRESHOLD_DB = -35.0


def speech_span(audio: np.ndarray, *, threshold_db: float = SPAN_THRESHOLD_DB) -> slice:
    """Samples from the first to the last frame with RMS >= max frame RMS + ``threshold_db``."""
    audio = as_waveform(audio, what="speech")
    n_frames = max(1, int(np.ceil(audio.size / FRAME)))
    padded = np.zeros(n_frames * FRAME, dtype=np.float64)
    padded[: audio.size] = audio
    rms = np.sqrt(np.mean(padded.reshape(n_frames, FRAME) ** 2, axis=1))
    if rms.max() == 0.0:
        raise AudioError("speech is all silent: its speech span and any SNR are undefined")
    active = np.flatnonzero(rms >= rms.max() * 10.0 ** (threshold_db / 20.0))
    return slice(int(active[0]) * FRAME, min(audio.size, (int(active[-1]) + 1) * FRAME))


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def measure_snr(speech: np.ndarray, noise: np.ndarray, span: slice | None = None) -> float:
    """``10 log10(P_speech / P_noise)`` in dB, powers over ``span`` (default: the speech span)."""
    span = speech_span(speech) if span is None else span
    p_noise = _power(noise[span])
    if p_noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(_power(speech[span]) / p_noise)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise, unit variance."""
    return rng.standard_normal(n)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f (pink) noise: white noise shaped by 1/sqrt(f) in the frequency domain, unit variance."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0  # leave DC unshaped, then remove it
    spectrum = spectrum / np.sqrt(freqs)
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n)
    return pink / pink.std()


def babble_noise(
    n: int, rng: np.random.Generator, clips: Sequence[np.ndarray], *, talkers: int = 6
) -> np.ndarray:
    """Babble: the sum of ``talkers`` real speech clips, each looped from a random offset
    and normalised to unit power; unit variance overall."""
    if not clips:
        raise ValueError("babble needs real speech clips")
    out = np.zeros(n, dtype=np.float64)
    for _ in range(talkers):
        clip = np.asarray(clips[int(rng.integers(len(clips)))], dtype=np.float64)
        clip = clip / np.sqrt(_power(clip))
        start = int(rng.integers(clip.size))
        reps = int(np.ceil((n + start) / clip.size))
        out += np.tile(clip, reps)[start : start + n]
    return out / out.std()


def make_noise(
    kind: str, n: int, rng: np.random.Generator, *, babble_clips: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """Noise of ``kind`` in ``NOISE_KINDS``, ``n`` samples, unit variance."""
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "babble":
        return babble_noise(n, rng, babble_clips)
    raise ValueError(f"unknown noise {kind!r}; known: {', '.join(NOISE_KINDS)}")


def mix_at_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, *, span: slice | None = None
) -> tuple[np.ndarray, float]:
    """``speech + g * noise`` with ``g`` chosen so that the SNR over ``span`` is ``snr_db``.

    ``g = sqrt(P_speech / (P_noise * 10^(snr_db / 10)))``. Returns the float32 mixture
    and the SNR measured on the stored float32 components. No clipping is applied
    (it would change the SNR); the mixture may exceed [-1, 1] at low SNR: the stimulus
    generators then scale it as a whole (``fit_to_unit_range``), which keeps the SNR.
    """
    speech = as_waveform(speech, what="speech")
    if noise.shape != speech.shape:
        raise ValueError(f"noise has {noise.shape} samples, speech {speech.shape}")
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    span = speech_span(speech) if span is None else span
    p_speech, p_noise = _power(speech[span]), _power(noise[span])
    if p_noise == 0.0:
        raise ValueError("noise is silent over the speech span")
    gain = np.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    scaled = (gain * noise).astype(np.float32)
    mixture = (speech.astype(np.float64) + scaled).astype(np.float32)
    measured = measure_snr(speech, mixture.astype(np.float64) - speech, span)
    return mixture, measured


def fit_to_unit_range(mixture: np.ndarray) -> tuple[np.ndarray, float]:
    """``(level * mixture, level)`` with ``level = min(1, 1 / peak)``: a mixture scaled as
    a whole into [-1, 1] (its SNR does not change; nothing is clipped)."""
    mixture = np.asarray(mixture, dtype=np.float64)
    level = min(1.0, 1.0 / float(np.abs(mixture).max()))
    return np.clip(level * mixture, -1.0, 1.0).astype(np.float32), level
