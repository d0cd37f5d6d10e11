"""The nnsight backend: the same interventions written as nnsight traces.

Each patched run is one trace of the full model (no restart from a cached layer),
so it is slower than the hook backend but independent of it, and it is the road to
remote execution on NDIF for models too large to run here (nnsight's ``remote=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from listenkit.engine.batch import Batch, metric_from_logits, positions_for
from listenkit.engine.nnsight_import import nnsight_module
from listenkit.engine.site_tables import OPENAI_WHISPER, Access
from listenkit.engine.sites import Site

__all__ = ["run_batch_nnsight"]


class _EncodeDecode(nn.Module):
    """``decoder(tokens, encoder(mel)[owner])``: one forward over rows of several items."""

    def __init__(self, whisper: nn.Module) -> None:
        super().__init__()
        self.whisper = whisper

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor, owner: torch.Tensor):
        return self.whisper.decoder(tokens, self.whisper.encoder(mel)[owner])


def _envoy(root, access: Access, layer: int):
    node = root.whisper
    for part in access.path.format(i=layer - 1).split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _get(envoy, access: Access):
    if access.kind == "input_heads":
        return envoy.input
    if access.kind == "output0":
        return envoy.output[0]
    return envoy.output


def _set(envoy, access: Access, value, positions, slices, n_rows: int) -> None:
    target = _get(envoy, access)
    for feats in slices or [slice(None)]:
        if positions is None:
            target[..., feats] = value[..., feats]
        elif isinstance(positions, torch.Tensor):
            target[:, positions, feats] = value[:, positions, feats]
        else:
            for row in range(n_rows):
                target[row, positions[row], feats] = value[row, positions[row], feats]


@torch.inference_mode()
def run_batch_nnsight(
    model, batch: Batch, sites: Sequence[Site], layers: dict[Site, tuple[int, ...]]
):
    NNsight = nnsight_module().NNsight

    traced = NNsight(_EncodeDecode(model.module))
    table = OPENAI_WHISPER
    rows_s, rows_b = batch.source, batch.base

    def forward_args(mel, rows):
        return mel, rows["tokens"][:, :-1], rows["owner"]

    # nnsight runs the trace body in its own frame: populate a container made outside
    # it with saved values (new bindings inside the body would not escape).
    stored: dict[tuple[Site, int, int], torch.Tensor] = {}
    with traced.trace(*forward_args(batch.mel_source, rows_s)):
        for s in sites:
            for layer in layers[s]:
                for k, a in enumerate(table[s.component]):
                    stored[(s, layer, k)] = _get(_envoy(traced, a, layer), a).save()
        logits_source = traced.output.save()
    with traced.trace(*forward_args(batch.mel_base, rows_b)):
        logits_base = traced.output.save()
    m_source = metric_from_logits(logits_source, rows_s)
    m_base = metric_from_logits(logits_base, rows_b)

    out = {}
    for s in sites:
        accesses = table[s.component]
        values = np.empty((len(batch.items), len(layers[s])))
        for j, layer in enumerate(layers[s]):
            if s.stack == "encoder":
                positions = positions_for(s, batch, None)
                n_rows = len(batch.items)
            else:
                positions = positions_for(s, batch, rows_b)
                n_rows = len(rows_b["lengths"])
            slices = None
            if s.heads is not None:
                n_heads = model.heads if s.stack == "encoder" else model.module.dims.n_text_head
                width = model.d_model // n_heads
                slices = [slice(h * width, (h + 1) * width) for h in s.heads]
            with traced.trace(*forward_args(batch.mel_base, rows_b)):
                for k, access in enumerate(accesses):
                    envoy = _envoy(traced, access, layer)
                    _set(envoy, access, stored[(s, layer, k)], positions, slices, n_rows)
                logits = traced.output.save()
            values[:, j] = metric_from_logits(logits, rows_b)
        out[s] = values
    return m_source, m_base, out
