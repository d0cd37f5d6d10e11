"""Significance tests and multiplicity: Holm, random-set permutation tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["holm", "hypergeometric_overlap", "permutation_test_head_set", "rank_p_value"]


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


def rank_p_value(observed: float, null: Sequence[float], *, tie_rtol: float = 0.0) -> float:
    """One-sided rank p-value against ``R`` random draws: ``(1 + #{null >= observed - tol})
    / (1 + R)`` with ``tol = tie_rtol * |observed|`` (never 0; the smallest possible value
    is ``1 / (1 + R)``). ``tie_rtol`` counts draws within that relative distance below
    the observed value as ties, so that rounding cannot decide between equal effects."""
    null = np.asarray(null, dtype=np.float64)
    if null.ndim != 1 or null.size == 0:
        raise ValueError("need at least one random draw")
    if not tie_rtol >= 0:
        raise ValueError(f"tie_rtol must be >= 0, got {tie_rtol}")
    threshold = observed - tie_rtol * abs(observed)
    return float((1 + np.count_nonzero(null >= threshold)) / (1 + null.size))


def hypergeometric_overlap(overlap: int, population: int, marked: int, drawn: int) -> float:
    """``P(X >= overlap)`` for ``X ~ Hypergeometric(population, marked, drawn)``: the chance
    that ``drawn`` items picked at random from ``population`` include at least
    ``overlap`` of the ``marked`` ones (``scipy.stats.hypergeom.sf(overlap - 1, ...)``)."""
    from scipy.stats import hypergeom

    if not (0 <= marked <= population and 0 <= drawn <= population and overlap >= 0):
        raise ValueError(
            f"need 0 <= marked, drawn <= population and overlap >= 0: "
            f"{overlap=}, {population=}, {marked=}, {drawn=}"
        )
    return float(hypergeom.sf(overlap - 1, population, marked, drawn))
