"""Where the peak of a layer curve is: ``L* = argmax_l E(l)`` and its bootstrap law.

Ties go to the lowest layer (``nan_argmax``), in the observed ``L*`` and in every
resample alike.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from listenkit.stats.curves import resampled_means
from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import as_rows, nan_argmax, percentile_interval, resample_counts

__all__ = ["bootstrap_argmax", "paired_peak_difference", "peak_location", "probability_in"]


def peak_location(
    effects: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int,
) -> dict:
    """Observed ``L* = argmax_l E(l)`` and ``n_resamples`` bootstrap draws of it (layers)."""
    ratio = as_ratio(effects)
    layers_arr = np.asarray(layers)
    samples = layers_arr[nan_argmax(resampled_means(ratio, n_resamples, rng))]
    return {"observed": int(layers_arr[nan_argmax(ratio.value())]), "samples": samples}


def bootstrap_argmax(
    effects: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
) -> np.ndarray:
    """Bootstrap distribution of ``L* = argmax_l mean effect`` (layer numbers)."""
    return peak_location(effects, layers, rng=rng, n_resamples=n_resamples)["samples"]


def probability_in(samples: np.ndarray, region: Collection[int]) -> float:
    """Share of bootstrap samples of ``L*`` that fall in ``region``."""
    return float(np.isin(samples, list(region)).mean())


def paired_peak_difference(
    effects: np.ndarray,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> dict:
    """``E(L*) - E(runner-up)`` with a paired bootstrap CI (same resampled stimuli for both).

    ``L*`` and the runner-up are fixed on the full sample (ties: lowest layer first).
    Choosing them on the same data biases the bound upwards; the cross-fitted test is
    ``listenkit.stats.sharpness``.
    """
    effects = as_rows(effects)
    if effects.shape[1] < 2:
        raise ValueError("a peak comparison needs at least two layers")
    order = np.argsort(-effects.mean(axis=0), kind="stable")
    peak, runner = int(order[0]), int(order[1])
    diffs = effects[:, peak] - effects[:, runner]
    n = len(diffs)
    boot = np.concatenate([c @ diffs / n for c in resample_counts(n, n_resamples, rng)])
    low, high = percentile_interval(boot, confidence)
    return {
        "peak_layer": int(layers[peak]),
        "runner_up_layer": int(layers[runner]),
        "difference": float(diffs.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
    }
