"""The hooks backend (default): plain torch hooks, restarting each patched run.

For each batch the *source* and *base* runs are computed once and reused by every
site and layer: the source run records the sites' activations, the base run
records the residual stream entering every block. A patched run at layer ``l`` then
restarts from the base residual entering block ``l`` (blocks below it are not
recomputed), patches the site at block ``l`` and runs the rest of the stack and the
decoder. At decoder sites the base run's cross-attention keys and values are
computed once per item and reused by every patched layer (``engine.decoder_kv``);
they take ``rows x 2 x decoder layers x 1500 x d_model`` floats per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np
import torch

from listenkit.engine.batch import Batch, check_finite, metric_from_logits, positions_for
from listenkit.engine.decoder_kv import CrossKV, cross_kv, decoder_logits, run_decoder_blocks
from listenkit.engine.hooks import capture, capture_block_inputs, patched
from listenkit.engine.site_tables import OPENAI_WHISPER
from listenkit.engine.sites import Site, SiteError
from listenkit.models.speech_model import SpeechModel

__all__ = ["decode_metric", "run_batch_hooks"]

CROSS_KV = "decoder.cross_kv"


def _patched_cross_kv(module, layer, dec_inputs, xa_base, kv_base, kv_source, batch) -> np.ndarray:
    """Block ``layer``'s cross-attention reads the source audio's keys and values; every
    other block reads the base audio's. Restarts at block ``layer`` (blocks below it do
    not read the audio of block ``layer``)."""
    block = module.decoder.blocks[layer - 1]
    kv = dict(kv_base)
    for proj in (block.cross_attn.key, block.cross_attn.value):
        kv[proj] = kv_source[proj]
    logits = run_decoder_blocks(module.decoder, dec_inputs[layer], xa_base, kv, first=layer)
    return metric_from_logits(logits, batch.base)


def decode_metric(
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
        return metric_from_logits(logits, rows)
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


def _check_decoder_alignment(batch: Batch) -> None:
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
def run_batch_hooks(
    model: SpeechModel,
    batch: Batch,
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
    check_finite("encoder output", feats_source, batch.ids)
    check_finite("encoder output", feats_base, batch.ids)

    # the base run's cross-attention keys and values, reused by every patched layer and
    # by the source run when it hears the same audio with the same rows per item
    kv_base = kv_source = xa_base = kv_for_base_rows = None
    same_rows = torch.equal(batch.source["owner"], batch.base["owner"])
    if dec_sites:
        kv_base = cross_kv(module.decoder, feats_base, batch.base["owner"])
        xa_base = feats_base[batch.base["owner"]]
        if same_audio and same_rows:
            kv_source = kv_base
    if any(s.component == CROSS_KV for s in dec_sites):
        # the source audio's keys and values, laid out on the base run's rows
        kv_for_base_rows = (
            kv_base if same_audio else cross_kv(module.decoder, feats_source, batch.base["owner"])
        )
        if kv_source is None and same_rows:
            kv_source = kv_for_base_rows
    with ExitStack() as stack:
        for s in dec_sites:
            if s.component != CROSS_KV:  # read from the K/V cache, not captured
                stack.enter_context(capture(module, table[s.component], layers[s], source_acts[s]))
        m_source = decode_metric(
            model, feats_source, batch.source, per_item=not dec_sites, kv=kv_source
        )
    dec_inputs: dict[int, torch.Tensor] = {}
    with capture_block_inputs(module.decoder.blocks, dec_layers, dec_inputs):
        m_base = decode_metric(model, feats_base, batch.base, per_item=not dec_sites, kv=kv_base)
    if dec_sites:
        _check_decoder_alignment(batch)

    out: dict[Site, np.ndarray] = {}
    for s in sites:
        accesses = table[s.component]
        values = np.empty((len(batch.items), len(layers[s])))
        for j, layer in enumerate(layers[s]):
            if s.component == CROSS_KV:
                values[:, j] = _patched_cross_kv(module, layer, dec_inputs, xa_base, kv_base,
                                                 kv_for_base_rows, batch)  # fmt: skip
                continue
            stored = [source_acts[s][(layer, k)] for k in range(len(accesses))]
            if s.stack == "encoder":
                pos = positions_for(s, batch, None)
                with patched(module, accesses, layer, stored, positions=pos, heads=s.heads,
                             n_heads=model.heads):  # fmt: skip
                    x = base_inputs[layer]
                    for block in module.encoder.blocks[layer - 1 :]:
                        x = block(x)
                    features = module.encoder.ln_post(x)
                values[:, j] = decode_metric(model, features, batch.base, per_item=True)
            else:
                rows = batch.base
                pos = positions_for(s, batch, rows)
                with patched(module, accesses, layer, stored, positions=pos, heads=s.heads,
                             n_heads=module.dims.n_text_head):  # fmt: skip
                    logits = run_decoder_blocks(
                        module.decoder, dec_inputs[layer], xa_base, kv_base, first=layer
                    )
                values[:, j] = metric_from_logits(logits, rows)
        out[s] = values
    return m_source, m_base, out
