"""The sweep engine: activation patching over layers with per-item metric values.

For each batch of items the *source* and *base* runs are computed once and reused by
every site and layer: the source run records the sites' activations, the base run
records the residual stream entering every block. A patched run at layer ``l`` then
restarts from the base residual entering block ``l`` (blocks below it are not
recomputed), patches the site at block ``l`` and runs the rest of the stack and the
decoder. At decoder sites the base run's cross-attention keys and values are
computed once per item and reused by every patched layer (``listenkit.decoder_kv``);
they take ``rows x 2 x decoder layers x 1500 x d_model`` floats per batch.
Denoising: source = clean, base = corrupt; noising: the reverse.

The metric of a run is ``sum_rows sign * sum_{t >= start} log p(tokens[t] | tokens[<t], audio)``
(teacher forced; ``ScoringRow``), which covers the reference-transcript log-prob
(one row) and logit differences between candidate continuations (two rows, +1/-1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from listenkit.decoder_kv import CrossKV, cross_kv, decoder_logits, run_decoder_blocks
from listenkit.hooks import capture, capture_block_inputs, patched
from listenkit.site_tables import OPENAI_WHISPER
from listenkit.sites import Site, SiteError
from listenkit.speech_model import SpeechModel

__all__ = ["PatchItem", "PatchResult", "RunInput", "ScoringRow", "run_patching"]


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


def _check_finite(name: str, values: torch.Tensor | np.ndarray, ids: Sequence[str]) -> None:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    bad = ~np.isfinite(array.reshape(len(ids), -1)).all(axis=1)
    if bad.any():
        which = [ids[i] for i in np.flatnonzero(bad)][:5]
        raise FloatingPointError(f"non-finite {name} for items {which}")


class _Batch:
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


def _metric_from_logits(logits: torch.Tensor, rows: dict) -> np.ndarray:
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    targets = rows["tokens"][:, 1:, None]
    picked = logprobs.gather(-1, targets)[..., 0].cpu()
    per_row = (picked * rows["mask"]).sum(dim=1)
    out = torch.zeros(rows["n_items"], dtype=torch.float64)
    out.index_add_(0, rows["owner"].cpu(), per_row)
    return out.numpy()


def _decode_metric(
    model: SpeechModel,
    features: torch.Tensor,
    rows: dict,
    *,
    per_item: bool = False,
    kv: CrossKV | None = None,
) -> np.ndarray:
    """Metric per item from encoder features. ``per_item`` decodes each item's rows on
    their own (no padding across items), so values do not depend on the batch.
    Otherwise all rows run as one batch, with the cross-attention projections
    computed once per item (or taken from ``kv``)."""
    if not per_item:
        decoder = model.module.decoder
        kv = cross_kv(decoder, features, rows["owner"]) if kv is None else kv
        logits = decoder_logits(decoder, rows["tokens"][:, :-1], features[rows["owner"]], kv)
        return _metric_from_logits(logits, rows)
    out = np.empty(rows["n_items"])
    owner = rows["owner"].cpu()
    for i in range(rows["n_items"]):
        select = torch.nonzero(owner == i)[:, 0]
        width = max(rows["lengths"][j] for j in select.tolist())
        tokens = rows["tokens"][select.to(rows["tokens"].device), :width]
        logits = model.module.decoder(
            tokens[:, :-1], features[i : i + 1].expand(len(select), -1, -1)
        )
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        picked = logprobs.gather(-1, tokens[:, 1:, None])[..., 0].cpu()
        out[i] = float((picked * rows["mask"][select, : width - 1]).sum())
    return out


def _positions(site: Site, batch: _Batch, rows: dict | None):
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


def _check_decoder_alignment(batch: _Batch) -> None:
    if batch.source["lengths"] != batch.base["lengths"]:
        raise SiteError(
            "decoder sites need source and base rows of equal length at every position; "
            f"got lengths {batch.source['lengths']} vs {batch.base['lengths']} "
            f"(items {batch.ids})"
        )


def _encoded(module, mel: torch.Tensor, keys: list[str], memo: dict | None) -> torch.Tensor:
    """Encoder output for a batch, reusing rows already in ``memo`` (audio sha256 -> row)."""
    if memo is not None and all(k in memo for k in keys):
        return torch.stack([memo[k] for k in keys])
    features = module.encoder(mel)
    if memo is not None:
        for k, row in zip(keys, features, strict=True):
            memo.setdefault(k, row)
    return features


@torch.inference_mode()
def _run_batch(
    model: SpeechModel,
    batch: _Batch,
    sites: Sequence[Site],
    layers: dict[Site, tuple[int, ...]],
    memo: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[Site, np.ndarray]]:
    module = model.module
    table = OPENAI_WHISPER
    enc_sites = [s for s in sites if s.stack == "encoder"]
    dec_sites = [s for s in sites if s.stack == "decoder"]
    enc_layers = sorted({layer for s in enc_sites for layer in layers[s]})
    dec_layers = sorted({layer for s in dec_sites for layer in layers[s]})

    source_acts: dict[Site, dict] = {s: {} for s in sites}

    base_inputs: dict[int, torch.Tensor] = {}
    if enc_sites:
        with ExitStack() as stack:
            for s in enc_sites:
                stack.enter_context(capture(module, table[s.component], layers[s], source_acts[s]))
            feats_source = module.encoder(batch.mel_source)
        with capture_block_inputs(module.encoder.blocks, enc_layers, base_inputs):
            feats_base = module.encoder(batch.mel_base)
        same_audio = False  # not checked here: the source run projects its own keys, values
    else:  # decoder sites only: the encoder output is a function of the audio alone
        source_keys, base_keys = batch.audio_keys("source"), batch.audio_keys("base")
        feats_source = _encoded(module, batch.mel_source, source_keys, memo)
        feats_base = _encoded(module, batch.mel_base, base_keys, memo)
        same_audio = source_keys == base_keys
    _check_finite("encoder output", feats_source, batch.ids)
    _check_finite("encoder output", feats_base, batch.ids)

    # the base run's cross-attention keys and values, reused by every patched layer and
    # by the source run when it hears the same audio with the same rows per item
    kv_base = kv_source = xa_base = None
    if dec_sites:
        kv_base = cross_kv(module.decoder, feats_base, batch.base["owner"])
        xa_base = feats_base[batch.base["owner"]]
        if same_audio and torch.equal(batch.source["owner"], batch.base["owner"]):
            kv_source = kv_base
    with ExitStack() as stack:
        for s in dec_sites:
            stack.enter_context(capture(module, table[s.component], layers[s], source_acts[s]))
        m_source = _decode_metric(
            model, feats_source, batch.source, per_item=not dec_sites, kv=kv_source
        )
    dec_inputs: dict[int, torch.Tensor] = {}
    with capture_block_inputs(module.decoder.blocks, dec_layers, dec_inputs):
        m_base = _decode_metric(model, feats_base, batch.base, per_item=not dec_sites, kv=kv_base)
    if dec_sites:
        _check_decoder_alignment(batch)

    out: dict[Site, np.ndarray] = {}
    for s in sites:
        accesses = table[s.component]
        values = np.empty((len(batch.items), len(layers[s])))
        for j, layer in enumerate(layers[s]):
            stored = [source_acts[s][(layer, k)] for k in range(len(accesses))]
            if s.stack == "encoder":
                pos = _positions(s, batch, None)
                with patched(module, accesses, layer, stored, positions=pos, heads=s.heads,
                             n_heads=model.heads):  # fmt: skip
                    x = base_inputs[layer]
                    for block in module.encoder.blocks[layer - 1 :]:
                        x = block(x)
                    features = module.encoder.ln_post(x)
                values[:, j] = _decode_metric(model, features, batch.base, per_item=True)
            else:
                rows = batch.base
                pos = _positions(s, batch, rows)
                with patched(module, accesses, layer, stored, positions=pos):
                    logits = run_decoder_blocks(
                        module.decoder, dec_inputs[layer], xa_base, kv_base, first=layer
                    )
                values[:, j] = _metric_from_logits(logits, rows)
        out[s] = values
    return m_source, m_base, out


def run_patching(
    model: SpeechModel,
    items: Sequence[PatchItem],
    sites: Sequence[Site],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    backend: str = "hooks",
    progress: bool = True,
    encoder_memo: dict | None = None,
) -> list[PatchResult]:
    """Patch each site at each of its layers (or ``layers``) for every item.

    Returns per-item metric values of the source, base and patched runs. With only
    decoder sites, ``encoder_memo`` (a dict shared between calls) caches encoder
    outputs by audio sha256, so audio seen before is not encoded again (hooks backend).
    """
    if not items:
        raise ValueError("no items to patch")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique")
    site_layers: dict[Site, tuple[int, ...]] = {}
    for s in sites:
        if s.component not in OPENAI_WHISPER:
            raise SiteError(
                f"{s.component} is not a Whisper site; audio language models run through "
                "listenkit.lm_grounding"
            )
        n = model.encoder_layers if s.stack == "encoder" else model.decoder_layers
        s.check(n_layers=n, n_heads=model.heads)
        site_layers[s] = s.layers(n) if layers is None else tuple(layers)
        for layer in site_layers[s]:
            s.at(int(layer)).layers(n)  # range check with the valid range in the message
    if backend == "nnsight":
        from listenkit.nnsight_backend import run_batch_nnsight as runner
    elif backend == "hooks":
        runner = _run_batch
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'hooks' or 'nnsight'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    m_source = np.empty(len(items))
    m_base = np.empty(len(items))
    patched_values = {s: np.empty((len(items), len(site_layers[s]))) for s in sites}
    total = len(items) * sum(len(v) for v in site_layers.values())
    with tqdm(total=total, disable=not progress, desc="patching", unit="run") as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = _Batch(model, chunk)
            if runner is _run_batch:
                src, base, values = runner(model, batch, sites, site_layers, encoder_memo)
            else:
                src, base, values = runner(model, batch, sites, site_layers)
            m_source[start : start + len(chunk)] = src
            m_base[start : start + len(chunk)] = base
            for s in sites:
                patched_values[s][start : start + len(chunk)] = values[s]
            bar.update(len(chunk) * sum(len(v) for v in site_layers.values()))
    for name, array in (("source metric", m_source), ("base metric", m_base)):
        _check_finite(name, array, ids)
    for s in sites:
        _check_finite(f"patched metric ({s.component})", patched_values[s], ids)
    return [
        PatchResult(
            site=s, layers=site_layers[s], source=m_source, base=m_base, patched=patched_values[s]
        )
        for s in sites
    ]
