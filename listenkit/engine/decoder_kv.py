"""Whisper's decoder with the cross-attention keys and values computed once.

Every decoder block's cross-attention projects the encoder output ``xa``
``[B, 1500, d]`` to keys and values; for a short transcript that projection costs
more than the rest of the decoder. It depends on the audio alone, so a patching
experiment computes it once per audio item and reuses it for every scoring row
and every patched layer. openai-whisper's ``MultiHeadAttention`` takes the
projections from ``kv_cache[module.key]`` / ``kv_cache[module.value]`` when
present; self-attention never finds its own modules there and runs as usual.
"""

from __future__ import annotations

import torch
from whisper.model import TextDecoder

__all__ = ["CrossKV", "cross_kv", "decoder_logits", "run_decoder_blocks"]

CrossKV = dict[torch.nn.Module, torch.Tensor]

_START_AT_POSITION_0 = object()  # a cache key no module looks up
_EMPTY = torch.empty(1, 0)  # [batch, length 0]


@torch.inference_mode()
def cross_kv(
    decoder: TextDecoder, features: torch.Tensor, rows: torch.Tensor | None = None
) -> CrossKV:
    """``{cross_attn.key: xa W_k, cross_attn.value: xa W_v + b_v}`` for every block,
    each ``[B, n_audio_ctx, d]``; with ``rows`` (item index per scoring row) the
    projections are computed per item and then repeated per row."""
    out: CrossKV = {}
    for block in decoder.blocks:
        attn = block.cross_attn
        for proj in (attn.key, attn.value):
            value = proj(features)
            out[proj] = value if rows is None else value[rows]
    return out


def run_decoder_blocks(
    decoder: TextDecoder, x: torch.Tensor, xa: torch.Tensor, kv: CrossKV, *, first: int = 1
) -> torch.Tensor:
    """Decoder blocks ``first..N`` (1-based) on the residual ``x``, then the final
    layer norm and the tied unembedding: logits ``[B, T, vocab]`` (float32).

    ``xa`` is the encoder output per row ``[B, n_audio_ctx, d]``; a block's
    cross-attention projects it only if ``kv`` lacks that block's projections."""
    for block in decoder.blocks[first - 1 :]:
        x = block(x, xa, mask=decoder.mask, kv_cache=kv)
    x = decoder.ln(x)
    return (x @ decoder.token_embedding.weight.to(x.dtype).T).float()


def decoder_logits(
    decoder: TextDecoder, tokens: torch.Tensor, xa: torch.Tensor, kv: CrossKV
) -> torch.Tensor:
    """``TextDecoder.forward(tokens, xa)`` (hooks on the decoder fire) with the
    cross-attention projections taken from ``kv``: a full teacher-forced pass.

    whisper's forward reads the position offset from the length of the first cache
    entry (incremental decoding); a leading empty entry makes that offset 0."""
    return decoder(tokens, xa, kv_cache={_START_AT_POSITION_0: _EMPTY, **kv})
