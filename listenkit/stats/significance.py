"""Significance tests and multiplicity: Holm, rank p-values against random draws (full R
or sequential), the hypergeometric overlap."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SequentialP",
    "holm",
    "hypergeometric_overlap",
    "rank_p_value",
    "sequential_p_value",
    "stratified_hypergeometric_overlap",
]


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


@dataclass(frozen=True, kw_only=True)
class SequentialP:
    """A sequential Monte Carlo p-value (Besag & Clifford 1991): ``p``, the draws made
    (``n``), how many reached the observed value (``hits``) and whether it stopped early."""

    p: float
    n: int
    hits: int
    stopped_early: bool
    null: tuple[float, ...]


def sequential_p_value(
    observed: float,
    draws: Iterable[float],
    *,
    h: int,
    max_draws: int,
    tie_rtol: float = 0.0,
) -> SequentialP:
    """Draw null values one at a time until ``h`` of them reach ``observed`` (within
    ``tie_rtol``, as in ``rank_p_value``): then ``p = h / n``; if ``max_draws`` (R) come
    first with fewer hits, ``p = (1 + #{null >= observed}) / (1 + R)``, the full-R rank
    p. (When the h-th hit is the R-th draw, p = h / R, Besag and Clifford's value.)
    ``draws`` may be lazy (a generator computing each random set's value on demand).
    A p <= alpha needs at least h / alpha draws; p = 1 / (1 + R) needs all R."""
    if h < 1 or max_draws < 1:
        raise ValueError(f"need h >= 1 and max_draws >= 1, got {h=}, {max_draws=}")
    if not tie_rtol >= 0:
        raise ValueError(f"tie_rtol must be >= 0, got {tie_rtol}")
    if not np.isfinite(observed):
        raise ValueError(f"the observed value must be finite, got {observed}")
    threshold = observed - tie_rtol * abs(observed)
    null: list[float] = []
    hits = 0
    for value in draws:
        null.append(float(value))
        if not np.isfinite(null[-1]):
            raise ValueError(f"draw {len(null)} is not finite ({null[-1]})")
        hits += null[-1] >= threshold
        if hits == h:
            n = len(null)
            return SequentialP(p=h / n, n=n, hits=hits, stopped_early=n < max_draws,
                               null=tuple(null))  # fmt: skip
        if len(null) == max_draws:
            break
    if len(null) < max_draws:
        raise ValueError(f"the draws ran out after {len(null)} of {max_draws}")
    return SequentialP(
        p=(1 + hits) / (1 + max_draws),
        n=max_draws,
        hits=hits,
        stopped_early=False,
        null=tuple(null),
    )


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


def stratified_hypergeometric_overlap(
    overlap: int, strata: Sequence[tuple[int, int, int]]
) -> tuple[float, float]:
    """``(P(sum_l X_l >= overlap), E[sum_l X_l])`` for independent ``X_l ~
    Hypergeometric(population_l, marked_l, drawn_l)``, one per stratum ``(population,
    marked, drawn)``: an overlap null that conditions on how many items were drawn in
    each stratum (e.g. heads per layer), by exact convolution of the pmfs."""
    from scipy.stats import hypergeom

    pmf = np.array([1.0])
    expected = 0.0
    for population, marked, drawn in strata:
        if not (0 <= marked <= population and 0 <= drawn <= population):
            raise ValueError(f"bad stratum {(population, marked, drawn)}")
        support = np.arange(0, drawn + 1)
        pmf = np.convolve(pmf, hypergeom.pmf(support, population, marked, drawn))
        expected += drawn * marked / population if population else 0.0
    tail = float(np.clip(pmf[max(0, overlap) :].sum(), 0.0, 1.0)) if overlap < pmf.size else 0.0
    return tail, expected
