"""Warp one rendition of a sentence onto another's timing (DTW + Praat), so that two
different voices can be patched frame by frame.

1. MFCCs of both renditions from Praat (``To MFCC``: 12 coefficients, 25 ms window,
   10 ms step), z-scored per coefficient over the two together.
2. Dynamic time warping of the frame sequences (Euclidean frame cost; steps (1, 0),
   (0, 1), (1, 1); a plain numpy/Python DP, exact and deterministic).
3. A Praat ``DurationTier`` on ``b``'s time axis with one point per ``anchor_s`` of
   ``b``: the factor of each segment is (A time it maps onto) / (B time it spans),
   clipped to ``factor_range``; ``Manipulation`` -> ``Replace duration tier`` ->
   overlap-add resynthesis.
4. Cut or zero-padded to ``a``'s length and scaled to ``a``'s RMS (loudness is not a
   cue). The alignment check is the correlation of the 20-ms RMS envelopes.
"""

from __future__ import annotations

import itertools

import numpy as np

from listenkit.models.audio import MODEL_SAMPLE_RATE, as_waveform
from listenkit.stimuli.prosody import PRAAT_SEED, _parselmouth, envelope_correlation

__all__ = ["dtw_path", "mfcc_frames", "warp_onto"]

STEP_S = 0.01  # MFCC frame step (s)


def mfcc_frames(audio: np.ndarray, sample_rate: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """``[frames, 12]`` MFCCs (Praat ``To MFCC``, 25 ms window, 10 ms step, c0 dropped)."""
    parselmouth, call = _parselmouth()
    sound = parselmouth.Sound(np.asarray(audio, np.float64), sampling_frequency=sample_rate)
    mfcc = call(sound, "To MFCC", 12, 0.025, STEP_S, 100.0, 100.0, 0.0)
    return np.asarray(mfcc.to_array(), dtype=np.float64)[1:].T


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The optimal warping path ``[(i, j), ...]`` between frame sequences ``a`` [n, d]
    and ``b`` [m, d] (from (0, 0) to (n - 1, m - 1); ties prefer the diagonal)."""
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = acc[i], acc[i - 1]
        c = cost[i - 1]
        for j in range(1, m + 1):
            row[j] = c[j - 1] + min(prev[j - 1], prev[j], row[j - 1])
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        steps = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
        k = int(np.argmin(steps))  # the diagonal first on ties
        i, j = (i - 1, j - 1) if k == 0 else (i - 1, j) if k == 1 else (i, j - 1)
    return np.array(path[::-1])


def warp_onto(
    a: np.ndarray,
    b: np.ndarray,
    *,
    anchor_s: float = 0.04,
    factor_range: tuple[float, float] = (0.1, 4.0),
    sample_rate: int = MODEL_SAMPLE_RATE,
) -> tuple[np.ndarray, dict]:
    """``b`` resynthesised at ``a``'s timing (module docstring): float32, as many samples
    as ``a``; with the alignment check (envelope correlation before and after)."""
    a = as_waveform(a, sample_rate=sample_rate, what="the timing reference")
    b = as_waveform(b, sample_rate=sample_rate, what="the rendition to warp")
    fa, fb = mfcc_frames(a, sample_rate), mfcc_frames(b, sample_rate)
    both = np.vstack([fa, fb])
    mean, sd = both.mean(0), both.std(0) + 1e-9
    path = dtw_path((fa - mean) / sd, (fb - mean) / sd)
    # the A frame each B frame maps onto (the mean over the path's matches)
    a_of_b = np.bincount(path[:, 1], weights=path[:, 0], minlength=len(fb)) / np.bincount(
        path[:, 1], minlength=len(fb)
    )
    parselmouth, call = _parselmouth()
    sound = parselmouth.Sound(b.astype(np.float64), sampling_frequency=sample_rate)
    duration_b = len(b) / sample_rate
    tier = call("Create DurationTier", "warp", 0.0, duration_b)
    hop = max(1, round(anchor_s / STEP_S))
    anchors = list(range(0, len(fb), hop))
    if anchors[-1] != len(fb) - 1:
        anchors.append(len(fb) - 1)
    low, high = factor_range
    for start, end in itertools.pairwise(anchors):
        factor = (a_of_b[end] - a_of_b[start]) / max(end - start, 1)
        time = (start + end) / 2 * STEP_S
        call(tier, "Add point", min(time, duration_b), float(np.clip(factor, low, high)))
    run = parselmouth.praat.run
    run(f"random_initializeWithSeedUnsafelyButPredictably ({PRAAT_SEED})")
    try:
        manipulation = call(sound, "To Manipulation", 0.01, 75.0, 600.0)
        call([manipulation, tier], "Replace duration tier")
        warped = call(manipulation, "Get resynthesis (overlap-add)")
    finally:
        run("random_initializeSafelyAndUnpredictably ()")
    out = np.asarray(warped.values[0], dtype=np.float64)
    out = np.pad(out, (0, max(0, len(a) - len(out))))[: len(a)]
    rms_a, rms_out = np.sqrt(np.mean(a**2)), np.sqrt(np.mean(out**2))
    if rms_out > 0:
        out *= rms_a / rms_out
    peak = np.abs(out).max()
    if peak > 1.0:
        out /= peak
    unwarped = np.pad(b, (0, max(0, len(a) - len(b))))[: len(a)]
    check = {
        "samples": len(a),
        "length_ratio_before": round(len(b) / len(a), 4),
        "envelope_correlation": round(envelope_correlation(a, out), 4),
        "envelope_correlation_unwarped": round(envelope_correlation(a, unwarped), 4),
    }
    return out.astype(np.float32), check
