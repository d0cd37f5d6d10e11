"""E1 / E1b analyses: where the causal peak is, and whether correlational profiles agree.

All take per-stimulus arrays (rows = included stimuli) and an explicit Generator.

- ``peak_location``: ``L* = argmax_l E(l)`` and its bootstrap distribution.
- ``change_point``: ``argmax_l (p(l) - p(l - 1))`` for a profile over layers ``0..N``
  (0 = conv front end), i.e. the layer with the largest increase.
- ``correlational_agreement``: joint bootstrap of stimuli for ``L*``, ``L_c`` (largest
  increase of ``1 - CKA``) and ``L_n`` (largest increase of the norm ratio);
  ``P(|L_c - L*| <= 1)`` and ``P(|L_n - L*| <= 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["change_point", "correlational_agreement", "peak_location"]


def peak_location(
    effects: np.ndarray, layers: Sequence[int], *, rng: np.random.Generator, n_resamples: int
) -> dict:
    """Observed ``L*`` and ``n_resamples`` bootstrap draws of it (layer numbers)."""
    effects = np.asarray(effects, dtype=np.float64)
    layers = np.asarray(layers)
    idx = rng.integers(0, len(effects), size=(n_resamples, len(effects)))
    samples = layers[np.argmax(effects[idx].mean(axis=1), axis=1)]
    return {"observed": int(layers[np.argmax(effects.mean(axis=0))]), "samples": samples}


def change_point(profile: np.ndarray) -> np.ndarray:
    """Layer (1..N) of the largest increase ``p[..., l] - p[..., l-1]`` of profiles over 0..N."""
    profile = np.asarray(profile, dtype=np.float64)
    return np.argmax(np.diff(profile, axis=-1), axis=-1) + 1


def correlational_agreement(
    effects: np.ndarray,
    cka: np.ndarray,
    norm_ratio: np.ndarray,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int,
) -> dict:
    """Joint bootstrap over stimuli of ``L*`` (causal) against ``L_c`` and ``L_n``.

    ``cka`` and ``norm_ratio`` are [stimuli, N + 1] (index 0 = conv front end); the
    profiles are the resampled means ``1 - mean CKA`` and ``mean norm ratio``.
    """
    effects, cka, norm_ratio = (np.asarray(a, dtype=np.float64) for a in (effects, cka, norm_ratio))
    if not (len(effects) == len(cka) == len(norm_ratio)):
        raise ValueError("effects, cka and norm_ratio need the same stimuli (rows)")
    if list(layers) != list(range(1, cka.shape[1])):
        raise ValueError("the causal sweep must cover layers 1..N to compare with profiles")
    layers = np.asarray(layers)
    idx = rng.integers(0, len(effects), size=(n_resamples, len(effects)))
    l_star = layers[np.argmax(effects[idx].mean(axis=1), axis=1)]
    l_c = change_point(1.0 - cka[idx].mean(axis=1))
    l_n = change_point(norm_ratio[idx].mean(axis=1))
    return {
        "L_star_samples": l_star,
        "L_c_samples": l_c,
        "L_n_samples": l_n,
        "L_c_observed": int(change_point(1.0 - cka.mean(axis=0))),
        "L_n_observed": int(change_point(norm_ratio.mean(axis=0))),
        "p_cka": float(np.mean(np.abs(l_c - l_star) <= 1)),
        "p_norm": float(np.mean(np.abs(l_n - l_star) <= 1)),
    }
