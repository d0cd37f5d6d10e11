"""E1b: do correlational profiles (CKA, norms) put the change where the causal peak is?

- ``change_point``: ``argmax_l (p(l) - p(l - 1))`` for a profile over layers ``0..N``
  (0 = conv front end), i.e. the layer with the largest increase (ties: lowest).
- ``correlational_agreement``: joint bootstrap of stimuli for ``L*``, ``L_c`` (largest
  increase of ``1 - CKA``) and ``L_n`` (largest increase of the norm ratio);
  ``P(|L_c - L*| <= 1)`` and ``P(|L_n - L*| <= 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import as_rows, nan_argmax, resample_counts

__all__ = ["change_point", "correlational_agreement"]


def change_point(profile: np.ndarray) -> np.ndarray:
    """Layer (1..N) of the largest increase ``p[..., l] - p[..., l-1]`` of profiles over 0..N."""
    profile = np.asarray(profile, dtype=np.float64)
    return nan_argmax(np.diff(profile, axis=-1)) + 1


def correlational_agreement(
    effects: np.ndarray | RatioOfMeans,
    cka: np.ndarray,
    norm_ratio: np.ndarray,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int,
) -> dict:
    """Joint bootstrap over stimuli of ``L*`` (causal, ``argmax E``) against ``L_c`` and ``L_n``.

    ``cka`` and ``norm_ratio`` are [stimuli, N + 1] (index 0 = conv front end); the
    profiles are the resampled means ``1 - mean CKA`` and ``mean norm ratio``.
    """
    ratio = as_ratio(effects)
    cka, norm_ratio = as_rows(cka, "cka"), as_rows(norm_ratio, "norm_ratio")
    if not (ratio.n == len(cka) == len(norm_ratio)):
        raise ValueError("effects, cka and norm_ratio need the same stimuli (rows)")
    if list(layers) != list(range(1, cka.shape[1])):
        raise ValueError("the causal sweep must cover layers 1..N to compare with profiles")
    layers_arr = np.asarray(layers)
    n = ratio.n
    l_star, l_c, l_n = [], [], []
    for counts in resample_counts(n, n_resamples, rng):
        l_star.append(layers_arr[nan_argmax(ratio.resampled(counts))])
        l_c.append(change_point(1.0 - counts @ cka / n))
        l_n.append(change_point(counts @ norm_ratio / n))
    l_star, l_c, l_n = (np.concatenate(x) for x in (l_star, l_c, l_n))
    return {
        "L_star_samples": l_star,
        "L_c_samples": l_c,
        "L_n_samples": l_n,
        "L_c_observed": int(change_point(1.0 - cka.mean(axis=0))),
        "L_n_observed": int(change_point(norm_ratio.mean(axis=0))),
        "p_cka": float(np.mean(np.abs(l_c - l_star) <= 1)),
        "p_norm": float(np.mean(np.abs(l_n - l_star) <= 1)),
    }
