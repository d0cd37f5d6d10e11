"""Whisper models with planted listen *heads*: known answers for the head analyses (E4).

The layout of ``planted.encoder`` (a region code in ``S0``, the frame's audio content
in ``S1``, moved information in ``S2``; the decoder reads region ``R``; block ``j``
moves region ``C_j`` into ``R``), with 8 heads of width 12 per block (32 encoder
heads, ``d_model = 96``). A head attends by matching one-hot codes in 6 of its
query/key dims (R, C_1..C_4 and the background), reads 12 of the 16 dims of ``S1`` and
writes them into ``S2``. A head that does not listen reads the silent background, the
same in every run.

- ``"one"``: in block ``j`` only head ``LISTEN_HEADS[j][0]`` reads ``C_j``. With
  ``planted_pairs(k)`` (only ``C_k`` corrupted) the effect lives in one head.
- ``"five"``: in block ``j`` the five heads ``LISTEN_HEADS[j]`` read ``C_j`` the same
  way: with ``planted_pairs(k)`` the effect lives in five known heads, equal shares.
- ``"spread"``: every head of every block reads ``C_2`` (``SPREAD_REGION``), all in the
  same way: with ``planted_pairs(2)`` the effect is spread evenly over all 32 heads.

A random 5-head set contains a given head with probability ``5 / (N x H)`` (here
5/32; whisper-tiny.en 5/24, whisper-base 5/48) and then recovers about as much as the
top 5: for a one-head effect, C6-sufficient rests on the other four top heads' small
effects.
"""

from __future__ import annotations

import torch
import whisper

from listenkit.models.speech_model import SpeechModel
from listenkit.planted.encoder import (
    _CODE_BG,
    _CODE_R,
    _LN_EPS,
    N_LAYERS,
    S0,
    S1,
    S2,
    _set_decoder,
    _set_front_end,
)

__all__ = ["HEADS", "KINDS", "LISTEN_HEADS", "SPREAD_REGION", "listen_heads", "planted_head_model"]

HEADS = 8
WIDTH = 12
D = HEADS * WIDTH  # 96: S0, S1, S2 as in planted.encoder, the rest unused
KINDS = ("one", "five", "spread")
# block j -> its listen heads: "one" uses the first, "five" all five
LISTEN_HEADS = {1: (6, 0, 3, 4, 7), 2: (5, 1, 2, 6, 7), 3: (2, 0, 4, 5, 6), 4: (3, 1, 2, 5, 7)}
SPREAD_REGION = 2  # the region every head of the "spread" model reads
_SLOT = {_CODE_R: 0, 1: 1, 2: 2, 3: 3, 4: 4, _CODE_BG: 5}  # code -> its query/key dim


def listen_heads(kind: str, k: int) -> tuple[tuple[int, int], ...]:
    """The planted listen heads for stimuli that corrupt ``C_k``, as ``(layer from 1, head
    from 0)``: one for ``"one"``, five for ``"five"``."""
    if kind not in ("one", "five"):
        raise ValueError(f"only 'one' and 'five' plant known heads, got {kind!r}")
    heads = LISTEN_HEADS[k][: 1 if kind == "one" else 5]
    return tuple((k, h) for h in heads)


def planted_head_model(kind: str, *, seed: int = 0) -> SpeechModel:
    """A 4-layer, 8-head Whisper-architecture model with planted listen heads (``kind``
    in ``KINDS``; see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    gen = torch.Generator().manual_seed(seed)
    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=D, n_audio_head=HEADS,
        n_audio_layer=N_LAYERS, n_vocab=51864, n_text_ctx=448, n_text_state=D,
        n_text_head=1, n_text_layer=1,
    )  # fmt: skip
    module = whisper.model.Whisper(dims)
    match = 40.0  # codes are ~0.3 after the near-linear LayerNorm: scores ~60
    listening = {"one": 1, "five": 5, "spread": HEADS}[kind]
    # the listeners of a block add up to the total write of planted.encoder; "spread"
    # has every head of every block listen to the same region, a quarter each per block
    gain = 200.0 / listening / (N_LAYERS if kind == "spread" else 1)
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        enc = module.encoder
        _set_front_end(enc, gen)
        # each head writes its 12 dims into S2 through orthonormal columns
        writes = torch.linalg.qr(torch.randn(HEADS, 16, WIDTH, generator=gen))[0]
        for j, block in enumerate(enc.blocks, start=1):
            block.attn_ln.weight[S0] = 1.0
            block.attn_ln.weight[S1] = 1.0
            block.attn_ln.eps = _LN_EPS
            block.mlp_ln.weight.fill_(1.0)
            listeners = (LISTEN_HEADS[j] + tuple(range(HEADS)))[:listening]
            listeners = tuple(range(HEADS)) if kind == "spread" else listeners
            for h in range(HEADS):
                base = h * WIDTH
                for code, slot in _SLOT.items():
                    # R's frames look for C_j (listeners) or the background; all others
                    # look for the background
                    region = SPREAD_REGION if kind == "spread" else j
                    target = region if (code == _CODE_R and h in listeners) else _CODE_BG
                    block.attn.query.weight[base + _SLOT[target], code] = match
                    block.attn.key.weight[base + slot, code] = match
                # listeners read the same content and write it the same way, so each
                # carries an equal share of one direction (their effects add up)
                shift = 0 if h in listeners else h
                for i in range(WIDTH):
                    block.attn.value.weight[base + i, 16 + (shift + i) % 16] = 1.0
                write = writes[0 if kind == "spread" else j - 1]
                write = write if h in listeners else writes[HEADS - 1 - h]
                block.attn.out.weight[S2, base : base + WIDTH] = write * gain
        enc.ln_post.weight.fill_(1.0)
        _set_decoder(module.decoder, gen)
    return SpeechModel(
        name=f"planted-heads-{kind}", module=module.eval(), source="listenkit.planted.heads"
    )
