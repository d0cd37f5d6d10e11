"""The one resampling core: bootstrap over stimuli with an explicit seeded Generator.

A bootstrap resample draws ``n`` stimulus indices with replacement,
``rng.integers(0, n, size=(block, n))``, in blocks of ``BLOCK`` resamples (the index
stream is the same as one draw of ``(n_resamples, n)``). A resample is kept as a
counts matrix ``C[b, i]`` (how often stimulus ``i`` was drawn), so any per-stimulus
sum is ``C @ x``: ``O(B n L)`` time and ``O(BLOCK n)`` memory. Every statistic in
``listenkit.stats`` draws through here, so one seed gives one stream everywhere.

Argmax over layers has one tie rule everywhere: the lowest layer wins, and
undefined (NaN) values are skipped (``nan_argmax``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = [
    "BLOCK",
    "as_rows",
    "cluster_onehot",
    "nan_argmax",
    "percentile_interval",
    "resample_counts",
    "seeded_generator",
]

BLOCK = 1000  # resamples per block


def as_rows(values: np.ndarray, name: str = "effects") -> np.ndarray:
    """``values`` as a finite float64 ``[stimuli x columns]`` array with at least one row."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be [stimuli x layers], got shape {values.shape}")
    if values.shape[0] == 0:
        raise ValueError(f"{name}: no stimuli (all excluded?)")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contain NaN/inf; drop excluded stimuli first")
    return values


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield bootstrap count matrices ``[block, n]`` (each row sums to ``n``), in blocks."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one stimulus")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    done = 0
    while done < n_resamples:
        block = min(BLOCK, n_resamples - done)
        idx = rng.integers(0, n, size=(block, n))
        counts = np.zeros((block, n))
        np.add.at(counts, (np.arange(block)[:, None], idx), 1.0)
        yield counts
        done += block


def nan_argmax(values: np.ndarray) -> np.ndarray:
    """Index of the largest defined value along the last axis (ties: the lowest index);
    -1 where no value is defined."""
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    out = np.argmax(np.where(defined, values, -np.inf), axis=-1)
    return np.where(defined.any(axis=-1), out, -1)


def percentile_interval(
    samples: np.ndarray, confidence: float, axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval ``(q_{a/2}, q_{1-a/2})``, ``a = 1 - confidence``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1 - confidence) / 2
    return np.quantile(samples, alpha, axis=axis), np.quantile(samples, 1 - alpha, axis=axis)


def seeded_generator(seed: int, *keys: str) -> np.random.Generator:
    """A Generator for one (claim, model, family, purpose): its entropy is the SHA-256
    of the pre-registered seed and the full keys, ``"\x1f"``-joined, as a 256-bit
    integer. Distinct keys give independent streams (``whisper-tiny.en`` and
    ``whisper-base`` no longer share a prefix-derived seed)."""
    material = "\x1f".join([str(int(seed)), *(str(k) for k in keys)]).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(material).digest(), "little"))


def cluster_onehot(clusters: Sequence[str] | None, n: int) -> np.ndarray:
    """``[clusters, n]`` indicator of each stimulus's cluster (``None``: every stimulus its
    own); ``counts @ onehot`` turns resampled cluster counts into row counts."""
    labels = list(range(n)) if clusters is None else [str(c) for c in clusters]
    if len(labels) != n:
        raise ValueError(f"need one cluster label per stimulus: {len(labels)} vs {n}")
    _, index = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    onehot = np.zeros((int(index.max()) + 1 if n else 0, n))
    onehot[index, np.arange(n)] = 1.0
    return onehot
