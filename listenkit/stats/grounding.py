"""Statistics of the grounding coefficient over stimuli (rows) and layers (columns).

dA and dT are ratios of means (``RatioOfMeans``, pre-registration v2):
``dA(l) = sum_i (m(x)_i - m(x <- a)_il) / sum_i (m(x)_i - m(x_a)_i)`` and
``dT(l) = sum_i (m(x <- t)_il - m(x)_i) / sum_i (m(x_t)_i - m(x)_i)``. Then

    gc(l) = dA(l) / (dA(l) + dT(l))                   (``positive_part=False``)
    gc(l) = dA+(l) / (dA+(l) + dT+(l)),  x+ = max(x, 0)   (``positive_part=True``)

undefined (NaN) where the denominator is below ``min_total``; with the positive
part gc lies in [0, 1]. Every bootstrap resamples stimuli jointly for dA and dT
(one count matrix per resample). Undefined values are never treated as numbers:
an argmax skips undefined layers (ties: the lowest layer), and a comparison
involving an undefined value counts against the claim it would support.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import BLOCK, nan_argmax, percentile_interval, resample_counts
from listenkit.stats.sharpness import simultaneous_peak_test

__all__ = [
    "GroundingCurves",
    "bootstrap_grounding",
    "drop_and_recover",
    "gc_cross_fitted_sharpness",
    "gc_group_difference_test",
    "grounding_coefficient",
    "grounding_records",
    "probability_drop_and_recover",
]


def grounding_coefficient(
    da: np.ndarray, dt: np.ndarray, *, min_total: float = 0.05, positive_part: bool = False
) -> np.ndarray:
    """``gc = dA / (dA + dT)`` (or with positive parts); NaN where ``dA + dT < min_total``."""
    da, dt = np.asarray(da, float), np.asarray(dt, float)
    if positive_part:
        da, dt = np.maximum(da, 0.0), np.maximum(dt, 0.0)
    total = da + dt
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total >= min_total, da / total, np.nan)


def _check(da, dt) -> tuple[RatioOfMeans, RatioOfMeans]:
    da, dt = as_ratio(da), as_ratio(dt)
    if da.num.shape != dt.num.shape:
        raise ValueError(
            f"dA and dT must be [stimuli x layers] of one shape: {da.num.shape}, {dt.num.shape}"
        )
    return da, dt


def _resampled(
    da: RatioOfMeans, dt: RatioOfMeans, n_resamples: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(dA*, dT*)`` blocks ``[block, layers]``, one joint resample of stimuli each."""
    for counts in resample_counts(da.n, n_resamples, rng):
        yield da.resampled(counts), dt.resampled(counts)


@dataclass(frozen=True, kw_only=True)
class GroundingCurves:
    """Per-layer dA, dT and gc with percentile CIs and the bootstrap ``l*``.

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
        return grounding_records(self, gc_defined_share=self.gc_defined_share)


def grounding_records(curves, **per_layer: np.ndarray) -> list[dict]:
    """One record per layer of a curves object with ``layers``, ``n``, ``da_mean``,
    ``dt_mean``, ``gc`` and their ``_low``/``_high`` bounds (None: undefined), plus the
    ``per_layer`` extras (name -> [layers] values)."""

    def num(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return [
        {
            "layer": layer,
            "n": curves.n,
            "dA": num(curves.da_mean[j]),
            "dA_ci": [num(curves.da_low[j]), num(curves.da_high[j])],
            "dT": num(curves.dt_mean[j]),
            "dT_ci": [num(curves.dt_low[j]), num(curves.dt_high[j])],
            "gc": num(curves.gc[j]),  # None = undefined
            "gc_ci": [num(curves.gc_low[j]), num(curves.gc_high[j])],
        }
        | {name: values[j].item() for name, values in per_layer.items()}
        for j, layer in enumerate(curves.layers)
    ]


def bootstrap_grounding(
    da: np.ndarray | RatioOfMeans,
    dt: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    min_total: float = 0.05,
    confidence: float = 0.95,
    positive_part: bool = False,
) -> GroundingCurves:
    """dA, dT, gc per layer with CIs, and the bootstrap distribution of ``l* = argmax gc``."""
    da, dt = _check(da, dt)
    layers_arr = np.asarray(layers)
    gc_of = lambda a, t: grounding_coefficient(  # noqa: E731
        a, t, min_total=min_total, positive_part=positive_part
    )
    da_b, dt_b, gc_b = [], [], []
    for mda, mdt in _resampled(da, dt, n_resamples, rng):
        da_b.append(mda)
        dt_b.append(mdt)
        gc_b.append(gc_of(mda, mdt))
    da_b, dt_b, gc_b = np.vstack(da_b), np.vstack(dt_b), np.vstack(gc_b)
    gc = gc_of(da.value(), dt.value())
    alpha = (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        gc_low = np.nanquantile(gc_b, alpha, axis=0)
        gc_high = np.nanquantile(gc_b, 1 - alpha, axis=0)
    peak = int(nan_argmax(gc))
    samples_idx = nan_argmax(gc_b)
    da_low, da_high = percentile_interval(da_b, confidence)
    dt_low, dt_high = percentile_interval(dt_b, confidence)
    return GroundingCurves(
        layers=tuple(int(x) for x in layers),
        n=da.n,
        da_mean=da.value(),
        da_low=da_low,
        da_high=da_high,
        dt_mean=dt.value(),
        dt_low=dt_low,
        dt_high=dt_high,
        gc=gc,
        gc_low=gc_low,
        gc_high=gc_high,
        gc_defined_share=np.isfinite(gc_b).mean(axis=0),
        l_star=0 if peak < 0 else int(layers_arr[peak]),
        l_star_samples=np.where(samples_idx >= 0, layers_arr[np.maximum(samples_idx, 0)], 0),
    )


def gc_cross_fitted_sharpness(
    da: np.ndarray | RatioOfMeans,
    dt: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    in_a: np.ndarray,
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    min_total: float = 0.05,
    confidence: float = 0.95,
    positive_part: bool = False,
) -> dict:
    """Cross-fitted sharpness of the gc peak (``listenkit.stats.sharpness``): ``l*`` from
    half A's gc, simultaneous max-T lower bounds of ``gc_B(l*) - gc_B(l)`` on half B
    for every layer where gc_B is defined (undefined resamples count against)."""
    da, dt = _check(da, dt)
    in_a = np.asarray(in_a, dtype=bool)
    if in_a.shape != (da.n,):
        raise ValueError(f"in_a needs one flag per stimulus ({da.n})")
    n_a, n_b = int(in_a.sum()), int((~in_a).sum())
    if n_a == 0 or n_b == 0:
        return {"n_a": n_a, "n_b": n_b, "sharp": None, "reason": "one half has no stimuli"}
    kw = {"min_total": min_total, "positive_part": positive_part}
    a_da, a_dt = da.subset(in_a), dt.subset(in_a)
    b_da, b_dt = da.subset(~in_a), dt.subset(~in_a)
    result = simultaneous_peak_test(
        grounding_coefficient(a_da.value(), a_dt.value(), **kw),
        grounding_coefficient(b_da.value(), b_dt.value(), **kw),
        lambda c: grounding_coefficient(b_da.resampled(c), b_dt.resampled(c), **kw),
        b_da.n,
        layers,
        rng,
        n_resamples,
        confidence,
    )
    return {"n_a": n_a, "n_b": n_b} | result


def gc_group_difference_test(
    da: np.ndarray | RatioOfMeans,
    dt: np.ndarray | RatioOfMeans,
    in_group: np.ndarray,
    layer_index: int,
    *,
    rng: np.random.Generator,
    n_permutations: int = 10_000,
    min_total: float = 0.05,
    positive_part: bool = False,
) -> dict:
    """One-sided permutation test that gc at one layer is lower in the group than outside it.

    Statistic ``s = gc_rest(l) - gc_group(l)`` (each from dA, dT as ratios of means
    within its subset); the group labels are permuted across stimuli;
    ``p = (1 + #{s_perm >= s_obs}) / (1 + n_permutations)``, where an undefined
    permuted statistic counts as ``>=`` (conservative). An undefined observed
    statistic, or an empty side, gives ``p = 1`` and a ``reason``.
    """
    da, dt = _check(da, dt)
    in_group = np.asarray(in_group, dtype=bool)
    if in_group.shape != (da.n,):
        raise ValueError(f"in_group must have one flag per stimulus ({da.n})")
    a_num, a_den = da.num[:, layer_index], da.den
    t_num, t_den = dt.num[:, layer_index], dt.den

    def statistic(mask: np.ndarray) -> np.ndarray:
        """``s`` for boolean masks ``[rows, n]`` (one row per labelling)."""
        group, rest = mask.astype(np.float64), (~mask).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ga = grounding_coefficient(
                (group @ a_num) / (group @ a_den),
                (group @ t_num) / (group @ t_den),
                min_total=min_total,
                positive_part=positive_part,
            )
            gr = grounding_coefficient(
                (rest @ a_num) / (rest @ a_den),
                (rest @ t_num) / (rest @ t_den),
                min_total=min_total,
                positive_part=positive_part,
            )
        return gr - ga

    n_group = int(in_group.sum())
    base = {"n_group": n_group, "n_rest": int(len(in_group) - n_group)}
    observed = float(statistic(in_group[None])[0])
    if n_group == 0 or n_group == len(in_group) or not np.isfinite(observed):
        return base | {"observed": observed, "p_value": 1.0, "reason": "statistic undefined"}
    exceed = 0
    done = 0
    while done < n_permutations:
        block = min(BLOCK, n_permutations - done)
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
    da: np.ndarray | RatioOfMeans,
    dt: np.ndarray | RatioOfMeans,
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    drop: float = 0.1,
    min_total: float = 0.05,
    positive_part: bool = False,
) -> float:
    """``P_boot`` of a drop-then-recovery pattern in the gc curve (``drop_and_recover``)."""
    da, dt = _check(da, dt)
    hits = 0
    for mda, mdt in _resampled(da, dt, n_resamples, rng):
        gc = grounding_coefficient(mda, mdt, min_total=min_total, positive_part=positive_part)
        hits += int(drop_and_recover(gc, drop=drop).sum())
    return hits / n_resamples
