"""Time-aligned voice and prosody changes with Praat (``praat-parselmouth``).

Praat's "Change gender" (PSOLA) shifts the formants by ``formant_shift_ratio``, moves
the pitch median to ``new_pitch_median`` (Hz; 0 keeps it), scales the pitch range by
``pitch_range_factor`` and keeps the duration (``duration_factor = 1``): the output
is the same utterance at the same timing, so a patching experiment can splice its
frames into the original's run frame by frame. Deterministic; no hand-written DSP.
"""

from __future__ import annotations

import numpy as np

from listenkit.models.audio import MODEL_SAMPLE_RATE, AudioError, as_waveform

__all__ = [
    "PRAAT_SEED",
    "PROSODY_CLASSES",
    "PraatUnavailableError",
    "change_voice",
    "envelope_correlation",
    "prosody_class",
]

PRAAT_SEED = 0  # Praat's resynthesis is random: every call is seeded (stimulus cache keys)


class PraatUnavailableError(RuntimeError):
    """``praat-parselmouth`` is not installed."""


def _parselmouth():
    try:
        import parselmouth
        from parselmouth.praat import call
    except ImportError as err:
        if "overload existing non-function object" in str(err):
            raise PraatUnavailableError(
                "praat-parselmouth cannot be imported after nnsight (nnsight mounts .save() on "
                "every object, which pybind11 refuses): import listenkit.stimuli (or "
                "parselmouth) before nnsight"
            ) from err
        raise PraatUnavailableError(  # pragma: no cover - a dependency of listenkit
            "time-aligned voice changes need Praat: pip install praat-parselmouth"
        ) from err
    return parselmouth, call


def change_voice(
    audio: np.ndarray,
    *,
    formant_shift_ratio: float = 1.0,
    new_pitch_median: float = 0.0,
    pitch_range_factor: float = 1.0,
    min_pitch: float = 75.0,
    max_pitch: float = 600.0,
    sample_rate: int = MODEL_SAMPLE_RATE,
    seed: int = PRAAT_SEED,
) -> np.ndarray:
    """Praat "Change gender" with duration factor 1: float32, exactly as many samples.

    The output is rescaled to the input's RMS level, so loudness is not a cue. Praat's
    resynthesis draws random numbers: its generator is seeded with ``seed`` for the call
    (and made unpredictable again after), so the same input gives the same output."""
    wave = as_waveform(audio, sample_rate=sample_rate, what="audio to change")
    if not (formant_shift_ratio > 0 and pitch_range_factor >= 0 and new_pitch_median >= 0):
        raise ValueError(
            "need formant_shift_ratio > 0, pitch_range_factor >= 0, new_pitch_median >= 0 Hz"
        )
    parselmouth, call = _parselmouth()
    sound = parselmouth.Sound(wave.astype(np.float64), sampling_frequency=sample_rate)
    run = parselmouth.praat.run
    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    try:
        changed = call(
            sound, "Change gender", min_pitch, max_pitch, formant_shift_ratio,
            new_pitch_median, pitch_range_factor, 1.0,
        )  # fmt: skip
    finally:
        run("random_initializeSafelyAndUnpredictably ()")
    out = np.asarray(changed.values[0], dtype=np.float64)
    if abs(len(out) - len(wave)) > 1:
        raise AudioError(f"Praat changed the length: {len(wave)} -> {len(out)} samples")
    out = np.pad(out, (0, max(0, len(wave) - len(out))))[: len(wave)]
    rms_in, rms_out = np.sqrt(np.mean(wave**2)), np.sqrt(np.mean(out**2))
    if rms_out > 0:
        out *= rms_in / rms_out
    peak = np.abs(out).max()
    if peak > 1.0:  # keep a valid waveform (the RMS match may push a peak past 1)
        out /= peak
    return out.astype(np.float32)


def envelope_correlation(a: np.ndarray, b: np.ndarray, *, frame_s: float = 0.02) -> float:
    """Pearson correlation of the 20-ms RMS envelopes of two equal-length waveforms: near
    1 when the same speech sits at the same times (an alignment check)."""
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} vs {len(b)} samples")
    hop = max(1, int(frame_s * MODEL_SAMPLE_RATE))
    n = len(a) // hop
    env = [np.sqrt((np.asarray(x[: n * hop], float).reshape(n, hop) ** 2).mean(1)) for x in (a, b)]
    return float(np.corrcoef(env[0], env[1])[0, 1])


# Synthetic prosody classes: an SER stand-in (E3), not emotion. Each class is the same
# utterance with Praat's pitch median and range changed at identical timing; formants
# and loudness (RMS) are kept, so neither timing nor level tells the classes apart.
PROSODY_CLASSES: dict[str, dict[str, float]] = {
    "neutral": {"new_pitch_median": 0.0, "pitch_range_factor": 1.0},
    "high-wide": {"new_pitch_median": 180.0, "pitch_range_factor": 1.8},
    "low-narrow": {"new_pitch_median": 85.0, "pitch_range_factor": 0.4},
    "high-flat": {"new_pitch_median": 180.0, "pitch_range_factor": 0.0},
}


def prosody_class(audio: np.ndarray, name: str, *, rms: float = 0.05) -> np.ndarray:
    """``audio`` in synthetic prosody class ``name`` (``PROSODY_CLASSES``; ``neutral`` is
    the unchanged utterance), scaled to the same RMS level ``rms`` (0.05 = -26 dBFS) in
    every class, so that level is not a cue."""
    if name not in PROSODY_CLASSES:
        raise ValueError(f"unknown prosody class {name!r}; known: {', '.join(PROSODY_CLASSES)}")
    wave = as_waveform(audio, what="audio")
    if name != "neutral":
        wave = change_voice(wave, formant_shift_ratio=1.0, **PROSODY_CLASSES[name])
    level = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    if level == 0.0:
        raise AudioError("silent audio has no prosody to change")
    out = wave.astype(np.float64) * (rms / level)
    if np.abs(out).max() > 1.0:
        raise AudioError(f"at RMS {rms} the {name!r} version would clip; choose a lower rms")
    return out.astype(np.float32)
