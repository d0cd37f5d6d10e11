"""Does a layer curve move deeper? The centre-of-mass shift of E3 (claim C4).

The centre of mass of the positive part of a recovery curve ``E(l)``, ``l = 1..N``:

    CoM = sum_l l * max(E(l), 0) / (N * sum_l max(E(l), 0))      (relative depth, in (0, 1])

undefined (NaN) when no layer recovers anything. ``Delta = CoM_after - CoM_before`` on
the same stimuli through two models; a paired bootstrap resamples clusters of stimuli
(a sentence's pairs stay together) and recomputes both ratio-of-means curves in every
resample, so ``P_boot(Delta > 0)`` and ``P_boot(L*_after > L*_before)`` share one
index stream. NaN resamples count as "not > 0".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import (
    cluster_onehot,
    nan_argmax,
    percentile_interval,
    resample_counts,
)

__all__ = ["ShiftTest", "centre_of_mass", "paired_shift"]


def centre_of_mass(curves: np.ndarray) -> np.ndarray:
    """CoM of each curve's positive part along the last axis (layers 1..N), relative to
    N; NaN where no layer is positive."""
    curves = np.asarray(curves, dtype=np.float64)
    positive = np.clip(np.nan_to_num(curves, nan=0.0), 0.0, None)
    n = curves.shape[-1]
    total = positive.sum(axis=-1)
    layers = np.arange(1, n + 1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        com = (positive * layers).sum(axis=-1) / (n * total)
    return np.where(total > 0, com, np.nan)


@dataclass(frozen=True)
class ShiftTest:
    """``Delta = CoM_after - CoM_before`` with its paired bootstrap (C4)."""

    com_before: float
    com_after: float
    delta: float
    delta_ci95: tuple[float, float]
    p_delta_positive: float  # P_boot(Delta > 0)
    l_star_before: int  # argmax E (ties: the lowest layer), from 1
    l_star_after: int
    p_l_star_later: float  # P_boot(L*_after > L*_before)
    n_stimuli: int
    n_clusters: int
    n_resamples: int
    delta_samples: np.ndarray

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "delta_samples"}
        out["delta_ci95"] = list(self.delta_ci95)
        return out


def paired_shift(
    before: np.ndarray | RatioOfMeans,
    after: np.ndarray | RatioOfMeans,
    *,
    rng: np.random.Generator,
    n_resamples: int,
    clusters: Sequence[str] | None = None,
) -> ShiftTest:
    """Paired cluster bootstrap of ``Delta = CoM(E_after) - CoM(E_before)``.

    ``before`` and ``after`` hold the same stimuli in the same order (rows), each a
    ratio of means (or plain per-stimulus effects). ``clusters`` labels each row (e.g.
    its sentence); a resample draws clusters with replacement and keeps all of a
    cluster's rows. Without labels every row is its own cluster.
    """
    before, after = as_ratio(before), as_ratio(after)
    if before.n != after.n or before.num.shape[1] != after.num.shape[1]:
        raise ValueError(
            f"before and after must hold the same stimuli and layers: {before.num.shape} vs "
            f"{after.num.shape}"
        )
    onehot = cluster_onehot(clusters, before.n)
    com_b, com_a = (float(centre_of_mass(r.value())) for r in (before, after))
    deltas, later = [], []
    for counts in resample_counts(len(onehot), n_resamples, rng):
        rows = counts @ onehot  # cluster counts -> row counts
        e_b, e_a = before.resampled(rows), after.resampled(rows)
        deltas.append(centre_of_mass(e_a) - centre_of_mass(e_b))
        later.append(nan_argmax(e_a) > nan_argmax(e_b))
    samples = np.concatenate(deltas)
    finite = samples[np.isfinite(samples)]
    low, high = percentile_interval(finite, 0.95) if finite.size else (np.nan, np.nan)
    return ShiftTest(
        com_before=com_b,
        com_after=com_a,
        delta=com_a - com_b,
        delta_ci95=(float(low), float(high)),
        p_delta_positive=float(np.mean(np.nan_to_num(samples, nan=0.0) > 0)),
        l_star_before=int(nan_argmax(before.value())) + 1,
        l_star_after=int(nan_argmax(after.value())) + 1,
        p_l_star_later=float(np.mean(np.concatenate(later))),
        n_stimuli=before.n,
        n_clusters=len(onehot),
        n_resamples=n_resamples,
        delta_samples=samples,
    )
