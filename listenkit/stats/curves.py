"""Layer curves: the mean effect per layer with a bootstrap CI over stimuli."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import percentile_interval, resample_counts

__all__ = ["Curve", "bootstrap_curve", "resampled_means"]


def resampled_means(
    effects: np.ndarray | RatioOfMeans, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``[n_resamples, layers]``: ``E`` (the ratio of means) of each bootstrap resample."""
    ratio = as_ratio(effects)
    return np.vstack([ratio.resampled(c) for c in resample_counts(ratio.n, n_resamples, rng)])


@dataclass(frozen=True, kw_only=True)
class Curve:
    """``E(l)`` per layer with a bootstrap CI; layers numbered from 1."""

    layers: tuple[int, ...]
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int
    confidence: float

    def to_records(self) -> list[dict]:
        return [
            {
                "layer": layer,
                "mean": float(m),
                "ci_low": float(lo),
                "ci_high": float(hi),
                "n": self.n,
            }
            for layer, m, lo, hi in zip(self.layers, self.mean, self.low, self.high, strict=True)
        ]


def bootstrap_curve(
    effects: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> Curve:
    """``E(l)`` per layer (ratio of means; the mean for plain arrays) and its percentile
    bootstrap CI over stimuli."""
    ratio = as_ratio(effects)
    low, high = percentile_interval(resampled_means(ratio, n_resamples, rng), confidence)
    return Curve(
        layers=tuple(layers),
        mean=ratio.value(),
        low=low,
        high=high,
        n=ratio.n,
        confidence=confidence,
    )
