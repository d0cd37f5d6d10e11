"""E1b v3: do the correlational profiles rank the layers as the causal profile does?

For profiles over the layers ``1..N``: Spearman's rho between the causal profile
``E(l)`` and a correlational one, tested against the exact permutation null (all
``N!`` orders of the correlational profile, which is equally likely under "the
profile's layer order is unrelated to E"): ``p = #{rho_perm >= rho_obs} / N!``
(one-sided, the observed order included). With N = 4 the smallest p is 1/24 = .042.

The correlational profiles are steps over the previous layer (layer 1 against the conv
front end, as v2's change points): ``1 - CKA(clean, corrupt)`` and the mean per-frame
norm ratio ``||h_corrupt|| / ||h_clean||``. Layers are not exchangeable when both
profiles follow smooth depth trends (two monotone profiles give rho = +-1), which the
evidence flags as a caveat.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.stats import rankdata

__all__ = ["monotone", "spearman_permutation", "step_profile"]


def step_profile(profile: np.ndarray) -> np.ndarray:
    """``p(l) - p(l - 1)`` for ``l = 1..N`` of a mean profile over ``0..N``."""
    return np.diff(np.asarray(profile, dtype=np.float64))


def monotone(values: np.ndarray) -> bool:
    steps = np.diff(np.asarray(values, dtype=np.float64))
    return bool(np.all(steps > 0) or np.all(steps < 0))


def _spearman(x_ranks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rho between fixed ranks ``x_ranks`` and every row of ``y`` (``[rows, N]``)."""
    y_ranks = np.apply_along_axis(rankdata, -1, y)
    xc = x_ranks - x_ranks.mean()
    yc = y_ranks - y_ranks.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc**2).sum() * (yc**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (yc @ xc) / den


def spearman_permutation(causal: np.ndarray, other: np.ndarray) -> dict:
    """Spearman's rho of two profiles and its exact one-sided permutation p (``rho``
    NaN, ``p`` None when a profile is constant)."""
    causal, other = np.asarray(causal, float), np.asarray(other, float)
    if causal.shape != other.shape or causal.ndim != 1 or causal.size < 3:
        raise ValueError("two profiles of the same length >= 3 are needed")
    if np.ptp(causal) == 0 or np.ptp(other) == 0:
        return {"rho": float("nan"), "p_value": None, "n_orders": 0}
    ranks = rankdata(causal)
    observed = float(_spearman(ranks, other[None])[0])
    orders = np.array(list(itertools.permutations(range(causal.size))))
    rhos = _spearman(ranks, other[orders])
    hits = int(np.count_nonzero(rhos >= observed - 1e-12))
    return {"rho": observed, "p_value": hits / len(orders), "n_orders": len(orders)}
