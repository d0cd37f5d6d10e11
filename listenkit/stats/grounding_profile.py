"""The decoder's listen layer and the grounding coefficient, pre-registration v3.

Over the conflicts past both signed floors (rows) and decoder layers (columns), with
dA and dT ratios of means (``listenkit.stats.grounding``):

- the listen layer ``l* = argmax_l dA(l)`` (where patching the audio stream moves the
  decision most); an exact tie for the maximum is reported, never broken by layer order;
- ``gc(l) = dA(l) / (dA(l) + dT(l))``, never clipped, *defined* at ``l`` only where the
  lower ends of the 95% bootstrap intervals of dA(l) and dT(l) are both > 0 and
  ``dA(l) + dT(l) >= min_sum`` (0.5): where both streams demonstrably carry the
  decision. In a bootstrap resample gc is defined at a defined layer when its dA* and
  dT* are > 0 and sum to at least ``min_sum``; elsewhere it is NaN.

Resamples draw *clusters* with replacement (stimuli sharing a cluster, e.g. the
negation_add and negation_remove conflicts of one sentence pair, move together).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from listenkit.stats.grounding import grounding_records
from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import BLOCK

__all__ = [
    "ListenProfile",
    "argmax_share",
    "cluster_index",
    "cluster_resample_counts",
    "listen_profile",
    "plain_gc",
    "shared_text_clusters",
    "split_by_cluster",
    "tied_maxima",
]


def shared_text_clusters(texts: Sequence[Sequence[str]]) -> list[str]:
    """The cluster of every stimulus (given its texts, e.g. (ref_text, conflict_text)):
    stimuli that share any text, directly or through others, form one cluster (the
    connected components of 'shares a sentence'); the key is the component's first
    text in sorted order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in texts:
        roots = [find(t) for t in group]
        for r in roots[1:]:
            a, b = sorted((find(roots[0]), find(r)))
            parent[b] = a
    members: dict[str, list[str]] = {}
    for t in parent:
        members.setdefault(find(t), []).append(t)
    key = {root: min(ts) for root, ts in members.items()}
    return [key[find(group[0])] for group in texts]


def split_by_cluster(clusters: Sequence[str], *, salt: str) -> np.ndarray:
    """Half A / half B per stimulus from a hash of its *cluster* key (pre-registered
    salt), so that no cluster straddles the halves."""
    from listenkit.stats.sharpness import split_halves

    keys = sorted(set(clusters))
    in_a = dict(zip(keys, split_halves(keys, salt=salt), strict=True))
    return np.array([in_a[c] for c in clusters], dtype=bool)


def cluster_index(keys: Sequence[str]) -> np.ndarray:
    """Cluster number (0..C-1, in order of first appearance) of every stimulus."""
    first: dict[str, int] = {}
    return np.array([first.setdefault(k, len(first)) for k in keys], dtype=np.int64)


def cluster_resample_counts(
    clusters: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Blocks ``[block, n]`` of per-stimulus counts: each resample draws C clusters with
    replacement (C = the number of clusters) and counts every stimulus of a drawn
    cluster once per draw."""
    clusters = np.asarray(clusters, dtype=np.int64)
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    if n_clusters == 0:
        raise ValueError("no stimuli to resample")
    done = 0
    while done < n_resamples:
        block = min(BLOCK, n_resamples - done)
        draws = rng.integers(0, n_clusters, size=(block, n_clusters))
        per_cluster = np.zeros((block, n_clusters), dtype=np.int64)
        np.add.at(per_cluster, (np.arange(block)[:, None], draws), 1)
        yield per_cluster[:, clusters]
        done += block


def tied_maxima(values: np.ndarray) -> list[int]:
    """Indices of the exact maximum of a 1-d curve (more than one: a tie)."""
    values = np.asarray(values, dtype=np.float64)
    return [int(i) for i in np.flatnonzero(values == np.max(values))]


def argmax_share(samples: np.ndarray) -> np.ndarray:
    """``[layers]``: the share of resamples (rows) whose maximum is at each layer, a tie
    splitting its resample's credit equally among the tied layers."""
    samples = np.asarray(samples, dtype=np.float64)
    at_max = samples == samples.max(axis=1, keepdims=True)
    return (at_max / at_max.sum(axis=1, keepdims=True)).mean(axis=0)


def plain_gc(
    da: np.ndarray, dt: np.ndarray, defined: np.ndarray, *, min_sum: float = 0.5
) -> np.ndarray:
    """``dA / (dA + dT)`` at the ``defined`` layers where ``dA > 0``, ``dT > 0`` and
    ``dA + dT >= min_sum``; NaN elsewhere. Works on ``[layers]`` or ``[rows, layers]``."""
    da, dt = np.asarray(da, np.float64), np.asarray(dt, np.float64)
    total = da + dt
    ok = np.asarray(defined, bool) & (da > 0) & (dt > 0) & (total >= min_sum)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, da / total, np.nan)


@dataclass(frozen=True, kw_only=True)
class ListenProfile:
    """dA, dT (with 95% percentile intervals), the listen layer and the defined gc."""

    layers: tuple[int, ...]
    n: int
    n_clusters: int
    da: np.ndarray
    da_low: np.ndarray
    da_high: np.ndarray
    dt: np.ndarray
    dt_low: np.ndarray
    dt_high: np.ndarray
    defined: np.ndarray  # [layers] bool: gc defined (the rule above)
    gc: np.ndarray  # NaN where undefined
    gc_low: np.ndarray
    gc_high: np.ndarray
    gc_undefined_share: np.ndarray  # [layers] share of resamples with gc* undefined
    da_samples: np.ndarray  # [resamples, layers]
    gc_samples: np.ndarray  # [resamples, layers]

    @property
    def da_mean(self) -> np.ndarray:  # the plots' name
        return self.da

    @property
    def dt_mean(self) -> np.ndarray:
        return self.dt

    @property
    def l_star_samples(self) -> np.ndarray:
        """``argmax dA`` per resample (a tie: the first tied layer; for the plots only)."""
        return np.asarray(self.layers)[np.argmax(self.da_samples, axis=1)]

    @property
    def tied(self) -> list[int]:
        """Layers (numbers) tied for the maximum of dA; one layer: no tie."""
        return [self.layers[i] for i in tied_maxima(self.da)]

    @property
    def l_star(self) -> int:
        """``argmax dA`` (the first of a tie; check ``tied``)."""
        return self.tied[0]

    def share_at(self, layers: Sequence[int]) -> float:
        """``P_boot(l* in layers)``, ties in a resample sharing its credit."""
        share = argmax_share(self.da_samples)
        return float(sum(share[self.layers.index(la)] for la in layers if la in self.layers))

    def to_records(self) -> list[dict]:
        return grounding_records(
            self, gc_defined=self.defined, gc_undefined_share=self.gc_undefined_share
        )


def listen_profile(
    da: np.ndarray | RatioOfMeans,
    dt: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    *,
    clusters: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    min_sum: float = 0.5,
    confidence: float = 0.95,
) -> ListenProfile:
    """dA, dT and gc per layer by the cluster bootstrap (module docstring)."""
    da, dt = as_ratio(da), as_ratio(dt)
    if da.num.shape != dt.num.shape or len(clusters) != da.n:
        raise ValueError("dA, dT and clusters must describe the same stimuli and layers")
    da_b, dt_b = [], []
    for counts in cluster_resample_counts(clusters, n_resamples, rng):
        da_b.append(da.resampled(counts))
        dt_b.append(dt.resampled(counts))
    da_b, dt_b = np.vstack(da_b), np.vstack(dt_b)
    alpha = (1 - confidence) / 2
    da_low, da_high = np.quantile(da_b, [alpha, 1 - alpha], axis=0)
    dt_low, dt_high = np.quantile(dt_b, [alpha, 1 - alpha], axis=0)
    da_v, dt_v = da.value(), dt.value()
    defined = (da_low > 0) & (dt_low > 0) & (da_v + dt_v >= min_sum)
    gc = plain_gc(da_v, dt_v, defined, min_sum=min_sum)
    gc_b = plain_gc(da_b, dt_b, defined, min_sum=min_sum)
    undefined_share = np.mean(~np.isfinite(gc_b), axis=0)
    gc_low = np.full(len(layers), np.nan)
    gc_high = np.full(len(layers), np.nan)
    for j in np.flatnonzero(defined):
        finite = gc_b[np.isfinite(gc_b[:, j]), j]
        if finite.size:
            gc_low[j], gc_high[j] = np.quantile(finite, [alpha, 1 - alpha])
    return ListenProfile(
        layers=tuple(int(x) for x in layers),
        n=da.n,
        n_clusters=int(np.max(clusters)) + 1,
        da=da_v,
        da_low=da_low,
        da_high=da_high,
        dt=dt_v,
        dt_low=dt_low,
        dt_high=dt_high,
        defined=defined,
        gc=gc,
        gc_low=gc_low,
        gc_high=gc_high,
        gc_undefined_share=undefined_share,
        da_samples=da_b,
        gc_samples=gc_b,
    )
