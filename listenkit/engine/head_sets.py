"""Sets of encoder attention heads, across layers, patched or mean-ablated at once.

A head's output is its slice ``h*d_head:(h+1)*d_head`` of the input of ``attn.out``
(TransformerLens' ``z``). For each batch the source and base runs are computed once;
a set's patched run overwrites its heads' slices at every layer it touches (from the
source run, or with ``means``: per-position means of a reference set, i.e. mean
ablation) and restarts at the set's lowest layer. Hooks backend only.

    m(set) = metric of the base run with the set's head outputs replaced
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from listenkit.engine.backends.hooks import decode_metric
from listenkit.engine.batch import Batch, PatchItem, check_finite
from listenkit.engine.hooks import capture, capture_block_inputs
from listenkit.engine.site_tables import OPENAI_WHISPER
from listenkit.models.speech_model import SpeechModel

__all__ = ["HeadSet", "head_means", "run_head_sets"]

HeadSet = tuple[tuple[int, int], ...]  # (layer from 1, head from 0)
_Z = OPENAI_WHISPER["encoder.head"]  # the input of attn.out


def _by_layer(head_set: HeadSet) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for layer, head in head_set:
        out[int(layer)].append(int(head))
    return dict(out)


@contextmanager
def _replaced(module, by_layer: Mapping[int, list[int]], values: Mapping[int, torch.Tensor],
              width: int):  # fmt: skip
    handles = []
    for layer, heads in by_layer.items():

        def pre_hook(_m, args, layer=layer, heads=heads):
            z = args[0].clone()
            value = values[layer].expand_as(z)
            for h in heads:
                z[..., h * width : (h + 1) * width] = value[..., h * width : (h + 1) * width]
            return (z, *args[1:])

        handles.append(
            module.encoder.blocks[layer - 1].attn.out.register_forward_pre_hook(pre_hook)
        )
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _check_sets(model: SpeechModel, head_sets: Sequence[HeadSet]) -> None:
    for s in head_sets:
        if not s:
            raise ValueError("a head set needs at least one (layer, head)")
        for layer, head in s:
            if not (1 <= layer <= model.encoder_layers and 0 <= head < model.heads):
                raise ValueError(
                    f"head ({layer}, {head}) out of range: layers 1..{model.encoder_layers}, "
                    f"heads 0..{model.heads - 1}"
                )


@torch.inference_mode()
def head_means(model: SpeechModel, audio: Sequence[np.ndarray], *, batch_size: int = 8):
    """Per-layer mean over ``audio`` of every head's output, per position:
    ``{layer: [1, n_audio_ctx, d_model]}`` (the reference for mean ablation)."""
    layers = list(range(1, model.encoder_layers + 1))
    total: dict[int, torch.Tensor] = {}
    for start in range(0, len(audio), batch_size):
        store: dict = {}
        with capture(model.module, _Z, layers, store):
            model.module.encoder(model.log_mel(list(audio[start : start + batch_size])))
        for layer in layers:
            part = store[(layer, 0)].double().sum(dim=0, keepdim=True)
            total[layer] = part if layer not in total else total[layer] + part
    return {layer: (v / len(audio)).to(model.dtype) for layer, v in total.items()}


@torch.inference_mode()
def run_head_sets(
    model: SpeechModel,
    items: Sequence[PatchItem],
    head_sets: Sequence[HeadSet],
    *,
    means: Mapping[int, torch.Tensor] | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    done: MutableMapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(m_source [n], m_base [n], m_patched [n, sets])`` with each set's heads taken from
    the source run (or from ``means``: mean ablation of the base run). ``progress`` is
    called with (items done, items) after every batch. ``done`` (batch start -> its
    three arrays) holds finished batches: they are taken from it, not recomputed, and
    every new batch is added (a checkpoint to resume a killed run from)."""
    if not items:
        raise ValueError("no items")
    _check_sets(model, head_sets)
    module, width = model.module, model.d_model // model.heads
    layers = sorted({layer for s in head_sets for layer, _ in s})
    n = len(items)
    m_source, m_base = np.empty(n), np.empty(n)
    patched = np.empty((n, len(head_sets)))
    for start in range(0, n, batch_size):
        rows = slice(start, min(n, start + batch_size))
        if done is not None and start in done:
            m_source[rows], m_base[rows], patched[rows] = done[start]
            if progress is not None:
                progress(rows.stop, n)
            continue
        batch = Batch(model, items[rows])
        # mean ablation of a run into itself (knockout): the source run is the base run
        self_ablation = means is not None and all(it.source is it.base for it in batch.items)
        store: dict = {}
        if not self_ablation:
            with capture(module, _Z, layers if means is None else [], store):
                feats = module.encoder(batch.mel_source)
            m_source[rows] = decode_metric(model, feats, batch.source, per_item=True)
        values = means if means is not None else {layer: store[(layer, 0)] for layer in layers}
        inputs: dict[int, torch.Tensor] = {}
        with capture_block_inputs(module.encoder.blocks, layers, inputs):
            feats = module.encoder(batch.mel_base)
        m_base[rows] = decode_metric(model, feats, batch.base, per_item=True)
        if self_ablation:
            m_source[rows] = m_base[rows]
        for j, head_set in enumerate(head_sets):
            by_layer = _by_layer(head_set)
            first = min(by_layer)
            with _replaced(module, by_layer, values, width):
                x = inputs[first]
                for block in module.encoder.blocks[first - 1 :]:
                    x = block(x)
                features = module.encoder.ln_post(x)
            patched[rows, j] = decode_metric(model, features, batch.base, per_item=True)
        if done is not None:
            done[start] = (m_source[rows].copy(), m_base[rows].copy(), patched[rows].copy())
        if progress is not None:
            progress(rows.stop, n)
    ids = [it.id for it in items]
    for name, array in (("source", m_source), ("base", m_base), ("head-set", patched)):
        check_finite(f"{name} metric", array, ids)
    return m_source, m_base, patched
