"""Statistics of the grounding coefficient over stimuli (rows) and layers (columns).

``gc(l) = mean_i dA[i, l] / (mean_i dA[i, l] + mean_i dT[i, l])`` (ratio of means),
undefined (NaN) where ``mean dA + mean dT < min_total``. Every bootstrap resamples
stimuli jointly for dA and dT (one index set per resample); intervals are
percentile intervals. Undefined values are never treated as numbers: an argmax
skips undefined layers, and a comparison involving an undefined value counts
against the claim it would support.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from listenkit.metrics import grounding_coefficient

__all__ = [
    "GroundingCurves",
    "bootstrap_grounding",
    "drop_and_recover",
    "gc_group_difference_test",
    "gc_peak_difference",
    "nan_argmax",
    "probability_drop_and_recover",
]

_CHUNK = 1000  # resamples per block, bounding memory at n_stimuli x _CHUNK counts


def _check(da: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    da, dt = np.asarray(da, dtype=np.float64), np.asarray(dt, dtype=np.float64)
    if da.ndim != 2 or da.shape != dt.shape:
        raise ValueError(
            f"dA and dT must be [stimuli x layers] of one shape: {da.shape}, {dt.shape}"
        )
    if da.shape[0] == 0:
        raise ValueError("no stimuli (all excluded?)")
    if not (np.isfinite(da).all() and np.isfinite(dt).all()):
        raise ValueError("dA/dT contain NaN/inf; drop excluded stimuli first")
    return da, dt


def _resampled_means(da: np.ndarray, dt: np.ndarray, n_resamples: int, rng: np.random.Generator):
    """Yield ``(mean dA, mean dT)`` blocks, each ``[block, layers]``, one joint index set
    per resample (counts matrix times the data: ``O(B n L)`` time, ``O(B n)`` memory)."""
    n = da.shape[0]
    done = 0
    while done < n_resamples:
        block = min(_CHUNK, n_resamples - done)
        idx = rng.integers(0, n, size=(block, n))
        counts = np.zeros((block, n))
        np.add.at(counts, (np.arange(block)[:, None], idx), 1.0)
        yield counts @ da / n, counts @ dt / n
        done += block


def nan_argmax(values: np.ndarray) -> np.ndarray:
    """Index of the largest defined value along the last axis; -1 where none is defined."""
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    filled = np.where(defined, values, -np.inf)
    out = np.argmax(filled, axis=-1)
    return np.where(defined.any(axis=-1), out, -1)


@dataclass(frozen=True, kw_only=True)
class GroundingCurves:
    """Per-layer means of dA, dT and gc with percentile CIs and the bootstrap ``l*``.

    ``gc_low``/``gc_high`` are computed over the resamples where gc is defined;
    ``gc_defined_share`` says in how many that was. ``l_star_samples`` holds layer
    numbers, 0 where gc was undefined at every layer.
    """

    layers: tuple[int, ...]
    n: int
    da_mean: np.ndarray
    da_low: np.ndarray
    da_high: np.ndarray
    dt_mean: np.ndarray
    dt_low: np.ndarray
    dt_high: np.ndarray
    gc: np.ndarray
    gc_low: np.ndarray
    gc_high: np.ndarray
    gc_defined_share: np.ndarray
    l_star: int  # 0 when gc is undefined at every layer
    l_star_samples: np.ndarray

    def to_records(self) -> list[dict]:
        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return [
            {
                "layer": layer,
                "n": self.n,
                "dA": num(self.da_mean[j]),
                "dA_ci": [num(self.da_low[j]), num(self.da_high[j])],
                "dT": num(self.dt_mean[j]),
                "dT_ci": [num(self.dt_low[j]), num(self.dt_high[j])],
                "gc": num(self.gc[j]),  # None = undefined (mean dA + mean dT < min_total)
                "gc_ci": [num(self.gc_low[j]), num(self.gc_high[j])],
                "gc_defined_share": float(self.gc_defined_share[j]),
            }
            for j, layer in enumerate(self.layers)
        ]


def bootstrap_grounding(
    da: np.ndarray,
    dt: np.ndarray,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    min_total: float = 0.05,
    confidence: float = 0.95,
) -> GroundingCurves:
    """Means, CIs and the bootstrap distribution of ``l* = argmax_l gc(l)``."""
    da, dt = _check(da, dt)
    layers_arr = np.asarray(layers)
    alpha = (1 - confidence) / 2
    da_means, dt_means, gcs = [], [], []
    for mda, mdt in _resampled_means(da, dt, n_resamples, rng):
        da_means.append(mda)
        dt_means.append(mdt)
        gcs.append(grounding_coefficient(mda, mdt, min_total=min_total))
    da_b, dt_b, gc_b = np.vstack(da_means), np.vstack(dt_means), np.vstack(gcs)
    gc = grounding_coefficient(da.mean(axis=0), dt.mean(axis=0), min_total=min_total)
    defined = np.isfinite(gc_b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        gc_low = np.nanquantile(gc_b, alpha, axis=0)
        gc_high = np.nanquantile(gc_b, 1 - alpha, axis=0)
    peak = int(nan_argmax(gc))
    samples_idx = nan_argmax(gc_b)
    return GroundingCurves(
        layers=tuple(int(x) for x in layers),
        n=da.shape[0],
        da_mean=da.mean(axis=0),
        da_low=np.quantile(da_b, alpha, axis=0),
        da_high=np.quantile(da_b, 1 - alpha, axis=0),
        dt_mean=dt.mean(axis=0),
        dt_low=np.quantile(dt_b, alpha, axis=0),
        dt_high=np.quantile(dt_b, 1 - alpha, axis=0),
        gc=gc,
        gc_low=gc_low,
        gc_high=gc_high,
        gc_defined_share=defined.mean(axis=0),
        l_star=0 if peak < 0 else int(layers_arr[peak]),
        l_star_samples=np.where(samples_idx >= 0, layers_arr[np.maximum(samples_idx, 0)], 0),
    )


def gc_peak_difference(
    da: np.ndarray,
    dt: np.ndarray,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    min_total: float = 0.05,
    confidence: float = 0.95,
) -> dict:
    """``gc(l*) - gc(runner-up)`` with a paired bootstrap CI (same resampled stimuli).

    ``l*`` and the runner-up are the two largest *defined* gc values on the full
    sample. A resample where either is undefined counts as ``-inf`` (against the peak).
    """
    da, dt = _check(da, dt)
    gc = grounding_coefficient(da.mean(axis=0), dt.mean(axis=0), min_total=min_total)
    defined = np.flatnonzero(np.isfinite(gc))
    if len(defined) < 2:
        return {
            "peak_layer": int(layers[defined[0]]) if len(defined) else None,
            "runner_up_layer": None,
            "difference": float("nan"),
            "ci_low": float("-inf"),
            "ci_high": float("nan"),
            "reason": f"gc is defined at {len(defined)} layer(s); a peak needs two",
        }
    order = defined[np.argsort(gc[defined])[::-1]]
    peak, runner = int(order[0]), int(order[1])
    diffs = []
    for mda, mdt in _resampled_means(da, dt, n_resamples, rng):
        g = grounding_coefficient(mda, mdt, min_total=min_total)
        d = g[:, peak] - g[:, runner]
        diffs.append(np.where(np.isfinite(d), d, -np.inf))
    boot = np.concatenate(diffs)
    alpha = (1 - confidence) / 2
    return {
        "peak_layer": int(layers[peak]),
        "runner_up_layer": int(layers[runner]),
        "difference": float(gc[peak] - gc[runner]),
        "ci_low": float(np.quantile(boot, alpha)),
        "ci_high": float(np.quantile(boot, 1 - alpha)),
        "undefined_share": float(np.mean(~np.isfinite(boot))),
    }


def gc_group_difference_test(
    da: np.ndarray,
    dt: np.ndarray,
    in_group: np.ndarray,
    layer_index: int,
    *,
    rng: np.random.Generator,
    n_permutations: int = 10_000,
    min_total: float = 0.05,
) -> dict:
    """One-sided permutation test that gc at one layer is lower in the group than outside it.

    Statistic ``s = gc_rest(l) - gc_group(l)`` (each a ratio of means within its
    subset); the group labels are permuted across stimuli;
    ``p = (1 + #{s_perm >= s_obs}) / (1 + n_permutations)``, where an undefined
    permuted statistic counts as ``>=`` (conservative). An undefined observed
    statistic, or an empty side, gives ``p = 1``.
    """
    da, dt = _check(da, dt)
    in_group = np.asarray(in_group, dtype=bool)
    if in_group.shape != (da.shape[0],):
        raise ValueError(f"in_group must have one flag per stimulus ({da.shape[0]})")
    a, t = da[:, layer_index], dt[:, layer_index]

    def statistic(mask: np.ndarray) -> np.ndarray:
        """``s`` for boolean masks ``[rows, n]`` (one row per labelling)."""
        group, rest = mask.astype(np.float64), (~mask).astype(np.float64)
        k, r = group.sum(axis=1), rest.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ga = grounding_coefficient((group @ a) / k, (group @ t) / k, min_total=min_total)
            gr = grounding_coefficient((rest @ a) / r, (rest @ t) / r, min_total=min_total)
        return gr - ga

    n_group = int(in_group.sum())
    base = {"n_group": n_group, "n_rest": int(len(in_group) - n_group)}
    observed = float(statistic(in_group[None])[0])
    if n_group == 0 or n_group == len(in_group) or not np.isfinite(observed):
        return base | {"observed": observed, "p_value": 1.0, "reason": "statistic undefined"}
    exceed = 0
    done = 0
    while done < n_permutations:
        block = min(_CHUNK, n_permutations - done)
        perms = np.argsort(rng.random((block, len(in_group))), axis=1)
        masks = np.zeros((block, len(in_group)), dtype=bool)
        masks[np.arange(block)[:, None], perms[:, :n_group]] = True
        s = statistic(masks)
        exceed += int(np.count_nonzero(~np.isfinite(s) | (s >= observed)))
        done += block
    return base | {
        "observed": observed,
        "p_value": float((1 + exceed) / (1 + n_permutations)),
    }


def drop_and_recover(gc: np.ndarray, *, drop: float = 0.1) -> np.ndarray:
    """Whether some ``l1 < l2 < l3`` (defined layers) have ``gc(l2) <= gc(l1) - drop`` and
    ``gc(l3) >= gc(l2) + drop``; ``gc`` is ``[layers]`` or ``[resamples, layers]``."""
    gc = np.atleast_2d(np.asarray(gc, dtype=np.float64))
    filled_max = np.where(np.isfinite(gc), gc, -np.inf)
    before = np.maximum.accumulate(filled_max, axis=1)  # max over l1 <= l
    after = np.maximum.accumulate(filled_max[:, ::-1], axis=1)[:, ::-1]  # max over l3 >= l
    found = np.zeros(gc.shape[0], dtype=bool)
    for j in range(1, gc.shape[1] - 1):
        middle = gc[:, j]
        ok = np.isfinite(middle)
        ok &= before[:, j - 1] >= middle + drop
        ok &= after[:, j + 1] >= middle + drop
        found |= ok
    return found


def probability_drop_and_recover(
    da: np.ndarray,
    dt: np.ndarray,
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    drop: float = 0.1,
    min_total: float = 0.05,
) -> float:
    """``P_boot`` of a drop-then-recovery pattern in the gc curve (``drop_and_recover``)."""
    da, dt = _check(da, dt)
    hits = 0
    for mda, mdt in _resampled_means(da, dt, n_resamples, rng):
        hits += int(
            drop_and_recover(grounding_coefficient(mda, mdt, min_total=min_total), drop=drop).sum()
        )
    return hits / n_resamples
