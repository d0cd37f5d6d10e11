"""The data a patching experiment runs on: items, scoring rows, batches, and the metric.

A ``PatchItem`` pairs a *source* run with a *base* run (``RunInput``: 16 kHz audio
and the decoder rows that define its metric). A ``Batch`` holds the tensors of a
few items with the rows flattened across items. The metric of a run is

    m = sum_rows sign * sum_{t >= start} log p(tokens[t] | tokens[<t], audio)

(teacher forced; ``ScoringRow``), which covers the reference-transcript log-prob
(one row) and logit differences between candidate continuations (two rows, +1/-1).
Both backends (``engine.backends``) build on this module; neither imports the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from listenkit.engine.sites import Site, SiteError
from listenkit.models.speech_model import SpeechModel

__all__ = [
    "Batch",
    "PatchItem",
    "PatchResult",
    "RunInput",
    "ScoringRow",
    "check_finite",
    "metric_from_logits",
    "positions_for",
]


@dataclass(frozen=True)
class ScoringRow:
    """Decoder input ``tokens``; ``tokens[start:]`` are scored with ``sign``."""

    tokens: tuple[int, ...]
    start: int
    sign: float = 1.0


@dataclass(frozen=True, kw_only=True)
class RunInput:
    """One forward run: 16 kHz audio and the decoder rows that define its metric."""

    audio: np.ndarray
    rows: tuple[ScoringRow, ...]


@dataclass(frozen=True, kw_only=True)
class PatchItem:
    """A source run whose activations are patched into a base run."""

    id: str
    source: RunInput
    base: RunInput
    position_sets: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PatchResult:
    site: Site
    layers: tuple[int, ...]
    source: np.ndarray  # [n]
    base: np.ndarray  # [n]
    patched: np.ndarray  # [n, n_layers]


def check_finite(name: str, values: torch.Tensor | np.ndarray, ids: Sequence[str]) -> None:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    bad = ~np.isfinite(array.reshape(len(ids), -1)).all(axis=1)
    if bad.any():
        which = [ids[i] for i in np.flatnonzero(bad)][:5]
        raise FloatingPointError(f"non-finite {name} for items {which}")


class Batch:
    """Tensors for one batch of items, rows flattened across items."""

    def __init__(self, model: SpeechModel, items: Sequence[PatchItem]) -> None:
        self.items = items
        self.ids = [it.id for it in items]
        self.mel_source = model.log_mel([it.source.audio for it in items])
        self.mel_base = model.log_mel([it.base.audio for it in items])
        if self.mel_source.ndim == 2:
            self.mel_source, self.mel_base = self.mel_source[None], self.mel_base[None]
        self.source = self._rows(model, [it.source.rows for it in items])
        self.base = self._rows(model, [it.base.rows for it in items])

    def audio_keys(self, role: str) -> list[str]:
        """sha256 of each item's ``role`` ("source" or "base") audio."""
        return [
            hashlib.sha256(np.ascontiguousarray(getattr(it, role).audio).tobytes()).hexdigest()
            for it in self.items
        ]

    @staticmethod
    def _rows(model: SpeechModel, per_item: Sequence[Sequence[ScoringRow]]):
        flat, owner = [], []
        for i, rows in enumerate(per_item):
            if not rows:
                raise ValueError("every run needs at least one scoring row")
            flat += rows
            owner += [i] * len(rows)
        width = max(len(r.tokens) for r in flat)
        if width > model.module.dims.n_text_ctx + 1:
            raise ValueError(f"a scoring row has {width} tokens; the decoder context is 448")
        eot = model.tokenizer.eot
        tokens = torch.tensor([list(r.tokens) + [eot] * (width - len(r.tokens)) for r in flat])
        mask = torch.zeros(len(flat), width - 1, dtype=torch.float64)
        for j, r in enumerate(flat):
            if not 1 <= r.start < len(r.tokens):
                raise ValueError(f"scoring start {r.start} outside a row of {len(r.tokens)} tokens")
            mask[j, r.start - 1 : len(r.tokens) - 1] = r.sign
        return {
            "tokens": tokens.to(model.device),
            "owner": torch.tensor(owner, device=model.device),
            "mask": mask,
            "lengths": [len(r.tokens) for r in flat],
            "n_items": len(per_item),
        }


def metric_from_logits(logits: torch.Tensor, rows: dict) -> np.ndarray:
    """``m`` per item from logits ``[rows, T, vocab]`` of a batch's flattened rows."""
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    targets = rows["tokens"][:, 1:, None]
    picked = logprobs.gather(-1, targets)[..., 0].cpu()
    per_row = (picked * rows["mask"]).sum(dim=1)
    out = torch.zeros(rows["n_items"], dtype=torch.float64)
    out.index_add_(0, rows["owner"].cpu(), per_row)
    return out.numpy()


def positions_for(site: Site, batch: Batch, rows: dict | None):
    """Index tensors for the site's positions: None (all), shared, or one per batch row."""
    if site.positions is None:
        return None
    if isinstance(site.positions, str):
        per_item = []
        for it in batch.items:
            if site.positions not in it.position_sets:
                raise SiteError(
                    f"item {it.id!r} has no position set {site.positions!r}; "
                    f"it has {sorted(it.position_sets)}"
                )
            per_item.append(torch.tensor(it.position_sets[site.positions], dtype=torch.long))
        if rows is None:
            return per_item
        return [per_item[int(o)] for o in rows["owner"]]
    return torch.tensor(site.positions, dtype=torch.long)
