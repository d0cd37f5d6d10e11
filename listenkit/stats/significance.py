"""Significance tests and multiplicity: Holm, random-set permutation tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["holm", "permutation_test_head_set"]


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values: ``p~_(k) = max_{j <= k} min(1, (m - j + 1) p_(j))``
    over the sorted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p-values must be a 1-d array in [0, 1], got {p_values!r}")
    order = np.argsort(p, kind="stable")
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
