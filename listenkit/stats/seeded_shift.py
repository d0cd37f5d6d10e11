"""C4 (v3): a centre-of-mass shift over LoRA seeds, against a readout null and a flat curve.

``CoM`` is ``listenkit.stats.shift.centre_of_mass`` (relative depth of the positive part
of a recovery curve ``E(l)``, ``l = 1..N``). With ``J`` adapted encoders (LoRA seeds) and
one unadapted encoder, all read the same way (the matched readout), the seeds' curves
are averaged first (so seed-to-seed wobble, which pulls a CoM toward the middle, averages
out before the CoM is taken):

    Delta_bar = CoM((1/J) sum_j E_after_j) - CoM(E_before)

Resampling has two levels: every resample draws the clusters of evaluation pairs with
replacement (one draw shared by every curve, all ratio-of-means curves recomputed) and
the ``J`` seeds with replacement. ``lower`` is the 5th percentile of ``Delta_bar*``;
``deep_lower`` the 5th percentile of ``CoM(mean E_after*) - CoM_flat``, with
``CoM_flat = (N + 1) / (2N)`` the CoM of a flat curve: a curve that only flattens moves
its CoM toward ``CoM_flat``, never past it.

The readout null: probes trained by the same recipe with different seeds on one encoder
(a group; there may be several encoders), ``Delta_ab = CoM(E | probe a) - CoM(E | probe
b)`` for every ordered pair ``a != b`` of a group; the null is the pooled bootstrap draws
of every ``Delta_ab`` (the same cluster draws). Both orders are in it, so it is symmetric
about 0: which probe is "probe 0" cannot move it. A readout that is not trained
(asr-noise: the frozen decoder) has no readout noise: the null is ``{0}``.

C4 holds iff ``margin = lower - q95(null) > 0``, every seed's own ``margin_j =
q5(Delta_j*) - q95(null) > 0`` (``Delta_j = CoM(E_after_j) - CoM(E_before)``: robust to
seed noise that 3 resampled seeds understate) and ``deep_margin = deep_lower - q95(null)
> 0`` (one curve's CoM against a fixed point carries its probe's readout noise, which
resampling pairs does not see).

Undefined values count against the claim: a resample whose CoM is NaN (no positive
layer) counts as ``-inf`` for the lower bounds and a NaN null draw as ``+inf``.

``peak_to_mean = max_l E(l) / mean_l max(E(l), 0)`` (1 for a flat curve, ``N`` for a
single-layer one) is reported with each curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import cluster_onehot, resample_counts
from listenkit.stats.shift import centre_of_mass

__all__ = ["SeededShift", "curve_shape", "flat_com", "seeded_shift"]


def flat_com(n_layers: int) -> float:
    """CoM of a flat positive curve over ``n_layers`` layers: ``(N + 1) / (2N)``."""
    return (n_layers + 1) / (2 * n_layers)


def curve_shape(curve: np.ndarray) -> dict[str, float]:
    """``com``, ``com_minus_flat`` and ``peak_to_mean`` of one curve (NaN if no layer
    is positive)."""
    curve = np.asarray(curve, dtype=np.float64)
    positive = np.clip(np.nan_to_num(curve, nan=0.0), 0.0, None)
    com = float(centre_of_mass(curve))
    mean = float(positive.mean())
    return {
        "com": com,
        "com_minus_flat": com - flat_com(curve.size),
        "peak_to_mean": float(np.nanmax(curve) / mean) if mean > 0 else float("nan"),
    }


@dataclass(frozen=True)
class SeededShift:
    """``Delta_bar`` and its resampled lower bound against the readout null."""

    delta: float  # observed Delta_bar = CoM(mean of the seeds' curves) - CoM(before)
    deltas_per_seed: list[float]  # CoM(E_after_j) - CoM(E_before)
    lower: float  # 5th percentile of Delta_bar* (NaN draws count as -inf)
    lower_per_seed: list[float]  # 5th percentile of each seed's Delta_j* (clusters resampled)
    null_q95: float  # 95th percentile of the pooled null draws (NaN as +inf); 0: no readout noise
    null_interval: tuple[float, float]  # 2.5th and 97.5th percentiles of the null draws
    null_observed: list[float]  # Delta_ab on the data, every ordered pair
    deep_lower: float  # 5th percentile of CoM(mean E_after*) - CoM_flat
    deep_margin: float  # deep_lower - null_q95
    margin: float  # lower - null_q95
    margins_per_seed: list[float]  # lower_per_seed - null_q95
    p_delta_positive: float  # share of Delta_bar* > 0
    n_seeds: int
    n_clusters: int
    n_resamples: int
    samples: np.ndarray
    null_samples: np.ndarray

    def holds(self) -> bool:
        """C4's rule: margin > 0, every seed's margin > 0 and deep_margin > 0."""
        return self.margin > 0 and min(self.margins_per_seed) > 0 and self.deep_margin > 0

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("samples", "null_samples")}
        out["null_interval"] = list(self.null_interval)
        return out


def _quantile(values: np.ndarray, q: float, *, undefined: float, axis: int | None = None):
    """``q``-th percentile with NaN replaced by ``undefined`` (-inf or +inf); with an
    infinity present the neighbour on the conservative side, not an interpolation."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=undefined)
    if np.all(np.isfinite(values)):
        return np.percentile(values, q, axis=axis)
    return np.percentile(values, q, axis=axis, method="lower" if undefined < 0 else "higher")


def seeded_shift(
    before: RatioOfMeans | np.ndarray,
    afters: Sequence[RatioOfMeans | np.ndarray],
    *,
    null_groups: Sequence[Sequence[RatioOfMeans | np.ndarray]] = (),
    clusters: Sequence[str] | None = None,
    n_resamples: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> SeededShift:
    """``Delta_bar`` over the seeds ``afters`` (each the same stimuli and layers as
    ``before``), its two-level bootstrap, and the readout null from ``null_groups``:
    each group the curves of one encoder read by probes of different seeds (none: a
    fixed readout)."""
    before = as_ratio(before)
    afters = [as_ratio(a) for a in afters]
    groups = [[as_ratio(c) for c in group] for group in null_groups]
    pairs = [(g[b], g[a]) for g in groups for a in range(len(g)) for b in range(len(g)) if a != b]
    if not afters:
        raise ValueError("need at least one adapted curve (one LoRA seed)")
    for r in afters + [x for p in pairs for x in p]:
        if r.num.shape != before.num.shape:
            raise ValueError(
                f"every curve must hold the same stimuli and layers: {r.num.shape} vs "
                f"{before.num.shape}"
            )
    onehot = cluster_onehot(clusters, before.n)
    n_seeds = len(afters)
    com_b = float(centre_of_mass(before.value()))
    per_seed = [float(centre_of_mass(a.value())) - com_b for a in afters]
    mean_after = np.mean([a.value() for a in afters], axis=0)
    flat = flat_com(mean_after.size)
    draws, null_draws, seed_draws, deep_draws = [], [], [], []
    for counts in resample_counts(len(onehot), n_resamples, rng):
        rows = counts @ onehot
        base = centre_of_mass(before.resampled(rows))
        curves = np.stack([a.resampled(rows) for a in afters])  # [J, B, L]
        seed_draws.append(centre_of_mass(curves) - base)  # [J, B]
        seeds = rng.integers(0, n_seeds, size=(n_seeds, rows.shape[0]))
        mean_curve = np.take_along_axis(curves, seeds[..., None], axis=0).mean(axis=0)
        com_after = centre_of_mass(mean_curve)
        draws.append(com_after - base)
        deep_draws.append(com_after - flat)
        for group in groups:
            g = [centre_of_mass(c.resampled(rows)) for c in group]
            null_draws += [g[a] - g[b] for a in range(len(g)) for b in range(len(g)) if a != b]
    samples = np.concatenate(draws)
    tail = (1.0 - level) * 100
    lower = float(_quantile(samples, tail, undefined=-np.inf))
    deep_lower = float(_quantile(np.concatenate(deep_draws), tail, undefined=-np.inf))
    by_seed = np.concatenate(seed_draws, axis=1)
    lower_per_seed = [float(x) for x in _quantile(by_seed, tail, undefined=-np.inf, axis=1)]
    if pairs:
        null = np.concatenate(null_draws)
        null_q95 = float(_quantile(null, 100 - tail, undefined=np.inf))
        interval = (
            float(_quantile(null, tail / 2, undefined=-np.inf)),
            float(_quantile(null, 100 - tail / 2, undefined=np.inf)),
        )
        observed = [float(centre_of_mass(a.value()) - centre_of_mass(b.value())) for b, a in pairs]
    else:
        null, null_q95, interval, observed = np.zeros(1), 0.0, (0.0, 0.0), []
    delta = float(centre_of_mass(mean_after)) - com_b
    return SeededShift(
        delta=delta,
        deltas_per_seed=per_seed,
        lower=lower,
        lower_per_seed=lower_per_seed,
        null_q95=null_q95,
        null_interval=(interval[0], interval[1]),
        null_observed=observed,
        deep_lower=deep_lower,
        deep_margin=deep_lower - null_q95,
        margin=lower - null_q95,
        margins_per_seed=[x - null_q95 for x in lower_per_seed],
        p_delta_positive=float(np.mean(np.nan_to_num(samples, nan=0.0) > 0)),
        n_seeds=n_seeds,
        n_clusters=len(onehot),
        n_resamples=n_resamples,
        samples=samples,
        null_samples=null,
    )
