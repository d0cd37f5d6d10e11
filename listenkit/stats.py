"""Statistics over per-stimulus effects (rows = stimuli, columns = layers).

Every resampling function takes an explicit ``numpy.random.Generator``. Bootstrap
resamples stimuli (rows) with replacement; intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Curve",
    "bootstrap_argmax",
    "bootstrap_curve",
    "holm",
    "paired_peak_difference",
    "permutation_test_head_set",
    "probability_in",
]


def _rows(effects: np.ndarray) -> np.ndarray:
    effects = np.asarray(effects, dtype=np.float64)
    if effects.ndim != 2:
        raise ValueError(f"effects must be [stimuli x layers], got shape {effects.shape}")
    if effects.shape[0] == 0:
        raise ValueError("no stimuli (all excluded?)")
    if not np.all(np.isfinite(effects)):
        raise ValueError("effects contain NaN/inf; drop excluded stimuli first")
    return effects


def _resample_means(effects: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = effects.shape[0]
    idx = rng.integers(0, n, size=(n_resamples, n))
    return effects[idx].mean(axis=1)  # [n_resamples, layers]


@dataclass(frozen=True, kw_only=True)
class Curve:
    """Mean effect per layer with a bootstrap CI; layers numbered from 1."""

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
    effects: np.ndarray,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> Curve:
    """Per-layer mean and percentile bootstrap CI over stimuli."""
    effects = _rows(effects)
    means = _resample_means(effects, n_resamples, rng)
    alpha = (1 - confidence) / 2
    return Curve(
        layers=tuple(layers),
        mean=effects.mean(axis=0),
        low=np.quantile(means, alpha, axis=0),
        high=np.quantile(means, 1 - alpha, axis=0),
        n=effects.shape[0],
        confidence=confidence,
    )


def bootstrap_argmax(
    effects: np.ndarray,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
) -> np.ndarray:
    """Bootstrap distribution of ``L* = argmax_l mean effect`` (layer numbers)."""
    effects = _rows(effects)
    return np.asarray(layers)[np.argmax(_resample_means(effects, n_resamples, rng), axis=1)]


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

    ``L*`` and the runner-up are fixed on the full sample; the CI's lower bound > 0
    says the peak stands out from the next-best layer.
    """
    effects = _rows(effects)
    if effects.shape[1] < 2:
        raise ValueError("a peak comparison needs at least two layers")
    order = np.argsort(effects.mean(axis=0))[::-1]
    peak, runner = int(order[0]), int(order[1])
    diffs = effects[:, peak] - effects[:, runner]
    idx = rng.integers(0, len(diffs), size=(n_resamples, len(diffs)))
    boot = diffs[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return {
        "peak_layer": int(layers[peak]),
        "runner_up_layer": int(layers[runner]),
        "difference": float(diffs.mean()),
        "ci_low": float(np.quantile(boot, alpha)),
        "ci_high": float(np.quantile(boot, 1 - alpha)),
    }


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def permutation_test_head_set(
    head_effects: np.ndarray,
    chosen: Sequence[int],
    *,
    rng: np.random.Generator,
    n_permutations: int = 10_000,
) -> dict:
    """Is the chosen head set's total effect larger than that of random sets of the same size?

    ``head_effects`` is [stimuli x heads] (or [heads]); the statistic is the mean over
    stimuli of the summed effect of the set. One-sided p-value with the +1 correction:
    ``p = (1 + #{random >= observed}) / (1 + n_permutations)``.
    """
    effects = np.asarray(head_effects, dtype=np.float64)
    per_head = effects.mean(axis=0) if effects.ndim == 2 else effects
    k = len(chosen)
    if not 0 < k < len(per_head):
        raise ValueError(f"head set size {k} must be between 1 and {len(per_head) - 1}")
    observed = float(per_head[list(chosen)].sum())
    random_sets = np.argsort(rng.random((n_permutations, len(per_head))), axis=1)[:, :k]
    null = per_head[random_sets].sum(axis=1)
    return {
        "observed": observed,
        "null_mean": float(null.mean()),
        "p_value": float((1 + np.count_nonzero(null >= observed)) / (1 + n_permutations)),
    }
