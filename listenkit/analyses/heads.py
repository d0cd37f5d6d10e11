"""E4: which attention heads carry the listen effect (per-head patching, head sets).

- ``head_sweep``: the denoising effect of every single head, at every layer, on
  minimal pairs: ``E(l, h) = sum(m(corrupt <- clean head (l, h)) - m_corrupt) /
  sum(m_clean - m_corrupt)`` (ratio of means over the pairs past the signed floor).
  Encoder self-attention heads (``encoder.head``) or decoder cross-attention heads
  (``decoder.cross_head``); one clean and one corrupt run per batch, every patched
  run restarts at its layer.
- ``top_heads``: the k largest effects (ties: lower layer, then lower head).
- ``head_set_recovery`` / ``head_set_knockout``: a chosen set against random sets of
  the same size, drawn uniformly from all encoder heads (Shi et al. 2024):
  ``p = (1 + #{random >= chosen}) / (1 + R)``. Recovery patches the set from the
  clean run into the corrupt run; knockout replaces the set's outputs in the clean
  run by their per-position means over the reference runs and measures the drop.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from listenkit.analyses.effects import StimulusEffects
from listenkit.analyses.listen_layer.patch_sweep import pair_items
from listenkit.engine.batch import PatchItem
from listenkit.engine.head_sets import HeadSet, head_means, run_head_sets
from listenkit.engine.patching import Progress, run_patching
from listenkit.engine.sites import Site
from listenkit.models.speech_model import SpeechModel
from listenkit.stats import RatioOfMeans, rank_p_value
from listenkit.stimuli.types import Pair

__all__ = [
    "HeadSweep",
    "head_set_knockout",
    "head_set_recovery",
    "head_sweep",
    "layer_matched_head_sets",
    "random_head_sets",
    "top_heads",
]

COMPONENT = {"encoder": "encoder.head", "decoder": "decoder.cross_head"}


@dataclass(frozen=True, kw_only=True)
class HeadSweep(StimulusEffects):
    """Metric values of every single-head patch: ``patched[i, l - 1, h]``."""

    stack: str
    ids: tuple[str, ...]
    clean: np.ndarray  # [n]
    corrupt: np.ndarray  # [n]
    patched: np.ndarray  # [n, layers, heads]
    floor: float

    def gaps(self) -> tuple[np.ndarray, ...]:
        """``m_clean - m_corrupt``: what the signed floor applies to."""
        return (self.clean - self.corrupt,)

    def ratio(self, rows: np.ndarray | None = None) -> RatioOfMeans:
        """``E(l, h)`` flattened to ``[.., layers * heads]`` over the included pairs (or
        ``rows``, a boolean mask or index into them)."""
        keep = self.rows(rows)
        num = (self.patched[keep] - self.corrupt[keep, None, None]).reshape(len(keep), -1)
        return RatioOfMeans(num, (self.clean - self.corrupt)[keep])

    def effects(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``E(l, h)`` as ``[layers, heads]``."""
        return self.ratio(rows).value().reshape(self.patched.shape[1:])

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "component": COMPONENT[self.stack],
            "ids": list(self.ids),
            "floor": self.floor,
            "clean": self.clean.tolist(),
            "corrupt": self.corrupt.tolist(),
            "patched": self.patched.tolist(),
        }


def head_sweep(
    model: SpeechModel,
    pairs: Sequence[Pair] | None = None,
    *,
    items: Sequence[PatchItem] | None = None,
    stack: str = "encoder",
    metric: str = "ref_logprob",
    reference: str = "greedy",
    floor: float = 1.0,
    batch_size: int = 8,
    progress: Progress = True,
    done: MutableMapping[int, tuple] | None = None,
) -> HeadSweep:
    """Denoise every single head at every layer (``stack``: encoder or decoder cross) for
    minimal ``pairs`` (or ready-made denoising ``items``, e.g. from ``pair_items``).
    ``done``: finished batches, as in ``run_patching`` (a checkpoint to resume from)."""
    if stack not in COMPONENT:
        raise ValueError(f"stack must be 'encoder' or 'decoder', got {stack!r}")
    if (pairs is None) == (items is None):
        raise ValueError("pass pairs or items, not both")
    n_heads = model.heads if stack == "encoder" else model.module.dims.n_text_head
    if items is None:
        items = pair_items(model, pairs, metric, reference=reference, batch_size=batch_size)
    sites = [Site(component=COMPONENT[stack], heads=(h,)) for h in range(n_heads)]
    results = run_patching(model, items, sites, batch_size=batch_size, progress=progress, done=done)
    return HeadSweep(
        stack=stack,
        ids=tuple(it.id for it in items),
        clean=results[0].source,
        corrupt=results[0].base,
        patched=np.stack([r.patched for r in results], axis=-1),
        floor=float(floor),
    )


def top_heads(effects: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The ``k`` heads with the largest effect, as ``(layer from 1, head from 0)``;
    ties go to the lower layer, then the lower head."""
    flat = np.asarray(effects, dtype=np.float64).ravel()
    if not 0 < k <= flat.size:
        raise ValueError(f"k must be 1..{flat.size}, got {k}")
    order = np.argsort(-flat, kind="stable")[:k]
    heads = effects.shape[1]
    return [(int(i // heads) + 1, int(i % heads)) for i in order]


def random_head_sets(
    n_layers: int, n_heads: int, k: int, r: int, rng: np.random.Generator
) -> list[HeadSet]:
    """``r`` sets of ``k`` distinct heads drawn uniformly from all ``n_layers x n_heads``."""
    sets = []
    for _ in range(r):
        flat = rng.choice(n_layers * n_heads, size=k, replace=False)
        sets.append(tuple(sorted((int(i // n_heads) + 1, int(i % n_heads)) for i in flat)))
    return sets


def layer_matched_head_sets(
    chosen: Sequence[tuple[int, int]], n_heads: int, r: int, rng: np.random.Generator
) -> list[HeadSet]:
    """``r`` random sets with the same number of heads in each layer as ``chosen``: the
    null for "these heads, not others of their layers" (distinct heads within a layer)."""
    histogram: dict[int, int] = {}
    for layer, _ in chosen:
        histogram[layer] = histogram.get(layer, 0) + 1
    sets = []
    for _ in range(r):
        heads = [(layer, int(h)) for layer, count in sorted(histogram.items())
                 for h in rng.choice(n_heads, size=count, replace=False)]  # fmt: skip
        sets.append(tuple(sorted(heads)))
    return sets


def head_set_recovery(
    model: SpeechModel,
    items: Sequence[PatchItem],
    chosen: HeadSet,
    random_sets: Sequence[HeadSet],
    *,
    batch_size: int = 8,
    tie_rtol: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    done: MutableMapping | None = None,
) -> dict[str, Any]:
    """Recovery ``sum(m(set) - m_corrupt) / sum(m_clean - m_corrupt)`` of the chosen set
    (patched together from the clean run) against random sets; rank p-value."""
    clean, corrupt, patched = run_head_sets(
        model,
        items,
        [chosen, *random_sets],
        batch_size=batch_size,
        progress=progress,
        done=done,
    )
    gap = float(np.sum(clean - corrupt))
    recovery = (patched - corrupt[:, None]).sum(axis=0) / gap
    return {
        "statistic": "ratio-of-means recovery of the set",
        "observed": float(recovery[0]),
        "null": recovery[1:].tolist(),
        "p_value": rank_p_value(float(recovery[0]), recovery[1:], tie_rtol=tie_rtol),
        "tie_rtol": tie_rtol,
        "R": len(random_sets),
    }


def head_set_knockout(
    model: SpeechModel,
    items: Sequence[PatchItem],
    chosen: HeadSet,
    random_sets: Sequence[HeadSet],
    *,
    batch_size: int = 8,
    tie_rtol: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    done: MutableMapping | None = None,
) -> dict[str, Any]:
    """Mean ablation in the clean runs (``item.source``): each set's head outputs replaced
    by their per-position means over the items' clean runs; the statistic is the mean
    drop ``m_clean - m(ablated)`` (nats), chosen set against random sets."""
    clean_items = [PatchItem(id=it.id, source=it.source, base=it.source) for it in items]
    means = head_means(model, [it.source.audio for it in items], batch_size=batch_size)
    _, clean, ablated = run_head_sets(
        model,
        clean_items,
        [chosen, *random_sets],
        means=means,
        batch_size=batch_size,
        progress=progress,
        done=done,
    )
    drop = (clean[:, None] - ablated).mean(axis=0)
    return {
        "statistic": "mean drop of the clean metric under mean ablation (nats)",
        "observed": float(drop[0]),
        "null": drop[1:].tolist(),
        "p_value": rank_p_value(float(drop[0]), drop[1:], tie_rtol=tie_rtol),
        "tie_rtol": tie_rtol,
        "R": len(random_sets),
    }
