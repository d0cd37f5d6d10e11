"""Validation of waveforms handed to a model.

Models take 16 kHz mono float waveforms in [-1, 1] (openai-whisper convention).
Anything else is an ``AudioError`` that says what is wrong, never a silent fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["MODEL_SAMPLE_RATE", "AudioError", "as_waveform", "as_waveform_batch"]

MODEL_SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """Audio that a model cannot take as it is."""


def as_waveform(
    audio: np.ndarray | torch.Tensor,
    *,
    sample_rate: int = MODEL_SAMPLE_RATE,
    what: str = "audio",
    resample_to_model_rate: bool = False,
) -> np.ndarray:
    """Return ``audio`` as a 1-D float32 numpy waveform, or raise ``AudioError``.

    Checks: sample rate is 16 kHz (or, with ``resample_to_model_rate``, any positive
    rate, resampled to 16 kHz after the checks), one channel (1-D), floating point, at
    least one sample, every sample finite and in [-1, 1].
    """
    if resample_to_model_rate and sample_rate != MODEL_SAMPLE_RATE:
        wave = as_waveform(audio, sample_rate=MODEL_SAMPLE_RATE, what=what)  # checks all but rate
        return np.clip(resample(wave, sample_rate), -1.0, 1.0)
    if sample_rate != MODEL_SAMPLE_RATE:
        raise AudioError(
            f"{what}: sample rate {sample_rate} Hz; the model needs {MODEL_SAMPLE_RATE} Hz "
            "(resample first, e.g. with listenkit.stimuli or scipy.signal.resample_poly)"
        )
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if not isinstance(audio, np.ndarray):
        raise AudioError(
            f"{what}: expected a numpy array or torch tensor, got {type(audio).__name__}"
        )
    if audio.ndim != 1:
        hint = " (stereo? downmix to mono first)" if audio.ndim == 2 else ""
        raise AudioError(f"{what}: expected a 1-D waveform, got shape {audio.shape}{hint}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(
            f"{what}: expected float samples in [-1, 1], got dtype {audio.dtype} "
            "(integer PCM? divide by 32768 for int16)"
        )
    if audio.size == 0:
        raise AudioError(f"{what}: empty waveform (0 samples)")
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioError(f"{what}: {bad} of {audio.size} samples are NaN or infinite")
    peak = float(np.abs(audio).max())
    if peak > 1.0:
        cause = (
            "it looks like integer PCM stored as floats: divide by 32768 (int16) or 2**31 (int32)"
            if peak >= 128
            else "unnormalised or clipped audio: scale it into [-1, 1] (e.g. divide by the peak)"
        )
        raise AudioError(f"{what}: samples must lie in [-1, 1], the peak is {peak:g}; {cause}")
    return np.ascontiguousarray(audio, dtype=np.float32)


def as_waveform_batch(
    audio: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
    *,
    sample_rate: int = MODEL_SAMPLE_RATE,
    resample_to_model_rate: bool = False,
    max_seconds: float | None = None,
) -> tuple[list[np.ndarray], bool]:
    """Normalise one waveform or a sequence of them to a list (``as_waveform`` each).

    Returns ``(waveforms, single)`` where ``single`` says the caller passed one
    waveform (so results should be unbatched). With ``max_seconds``, a longer waveform
    is an ``AudioError`` (Whisper hears one 30-s window; nothing is cut silently).
    """
    options = {"sample_rate": sample_rate, "resample_to_model_rate": resample_to_model_rate}
    if isinstance(audio, (np.ndarray, torch.Tensor)) and audio.ndim == 1:
        return _check_length([as_waveform(audio, **options)], max_seconds), True
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        raise AudioError(
            f"audio: expected a 1-D waveform or a list of them, got an array of shape "
            f"{tuple(audio.shape)}; pass a list for a batch (stereo? downmix to mono first)"
        )
    items = list(audio)
    if not items:
        raise AudioError("audio: empty batch (no waveforms)")
    waves = [as_waveform(a, what=f"audio[{i}]", **options) for i, a in enumerate(items)]
    return _check_length(waves, max_seconds), False


def _check_length(waves: list[np.ndarray], max_seconds: float | None) -> list[np.ndarray]:
    if max_seconds is None:
        return waves
    limit = round(max_seconds * MODEL_SAMPLE_RATE)
    for i, w in enumerate(waves):
        if w.size > limit:
            raise AudioError(
                f"audio[{i}] is {w.size / MODEL_SAMPLE_RATE:.1f} s; the model hears one "
                f"{max_seconds:g}-s window. Pass trim=True to use the first {max_seconds:g} s, "
                "or split the audio"
            )
    return waves


def resample(audio: np.ndarray, from_rate: int, to_rate: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``, Kaiser window, beta 5.0).

    The ratio ``to_rate / from_rate`` is reduced by its gcd, e.g. 22,050 -> 16,000 Hz
    is up 320, down 441.
    """
    from math import gcd

    from scipy.signal import resample_poly

    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return np.asarray(audio, dtype=np.float32)
    g = gcd(from_rate, to_rate)
    return resample_poly(audio, to_rate // g, from_rate // g).astype(np.float32)
