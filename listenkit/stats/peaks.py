"""Where the peak of a layer curve is: ``L* = argmax_l E(l)`` and its bootstrap law.

Ties go to the lowest layer (``nan_argmax``), in the observed ``L*`` and in every
resample alike.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from listenkit.stats.curves import resampled_means
from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import nan_argmax

__all__ = ["Peak", "bootstrap_argmax", "peak_location", "probability_in"]


@dataclass(frozen=True, kw_only=True)
class Peak:
    """``observed``: ``L* = argmax_l E(l)`` (a layer number); ``samples``: its bootstrap
    draws (layer numbers)."""

    observed: int
    samples: np.ndarray


def peak_location(
    effects: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int,
) -> Peak:
    """Observed ``L* = argmax_l E(l)`` and ``n_resamples`` bootstrap draws of it (layers)."""
    ratio = as_ratio(effects)
    layers_arr = np.asarray(layers)
    samples = layers_arr[nan_argmax(resampled_means(ratio, n_resamples, rng))]
    return Peak(observed=int(layers_arr[nan_argmax(ratio.value())]), samples=samples)


def bootstrap_argmax(
    effects: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
) -> np.ndarray:
    """Bootstrap distribution of ``L* = argmax_l mean effect`` (layer numbers)."""
    return peak_location(effects, layers, rng=rng, n_resamples=n_resamples).samples


def probability_in(samples: np.ndarray, region: Collection[int]) -> float:
    """Share of bootstrap samples of ``L*`` that fall in ``region``."""
    return float(np.isin(samples, list(region)).mean())
