"""Whisper models with a planted listen layer: known answers for the sweep engine.

The models run the real openai-whisper code path with hand-set weights. The
residual stream (``d = 48``) has three subspaces: ``S0`` (dims 0-15) holds a code
for which *region* of the 30 s window a frame is in (through the positional
embedding), ``S1`` (16-31) the frame's own audio content (conv front end), ``S2``
(32-47) information moved between frames. The decoder reads only the frames of
region ``R``. Encoder block ``j``'s attention makes ``R`` frames attend to region
``C_j`` and copies ``C_j``'s content (S1) into ``R``'s S2; every other frame attends
to the silent background (the same in every run), and MLPs write nothing. So
information from ``C_j`` reaches the output through block ``j``'s attention only.

- ``planted_model(k)`` + ``planted_pairs(k)``: only ``C_k`` is corrupted, so only
  block ``k`` carries the difference: the listen layer is ``k``.
- ``planted_pairs(None)``: every region is corrupted with independent random
  strengths per stimulus: no layer is special (no unique peak).

The blocks' LayerNorms get a large ``eps`` so they are nearly linear and cannot leak
information between subspaces through their statistics.
"""

from __future__ import annotations

import numpy as np
import torch
import whisper

from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.types import Pair, Utterance

__all__ = ["N_LAYERS", "planted_model", "planted_pairs", "region_frames"]

N_LAYERS = 4
D = 48
S0, S1, S2 = slice(0, 16), slice(16, 32), slice(32, 48)
FRAME_SAMPLES = 320  # one encoder frame = 20 ms at 16 kHz
R_FRAMES = (200, 230)
_CODE_R = 0  # S0 code index of region R; region C_j has code j; background code 15
_CODE_BG = 15
_LN_EPS = 1e4


def region_frames(j: int) -> tuple[int, int]:
    """Encoder frames ``[start, stop)`` of region ``C_j`` (``j`` from 1)."""
    start = 260 + 50 * (j - 1)
    return start, start + 30


def _codes() -> np.ndarray:
    codes = np.full(1500, _CODE_BG)
    codes[R_FRAMES[0] : R_FRAMES[1]] = _CODE_R
    for j in range(1, N_LAYERS + 1):
        a, b = region_frames(j)
        codes[a:b] = j
    return codes


def _set_front_end(enc, gen: torch.Generator) -> None:
    """Conv front end: mel -> random ``S1`` content, nothing else; positional embedding:
    a one-hot region code (``_codes``) of size 30 in ``S0``. Works for any ``d_model``."""
    enc.conv1.weight[S1] = torch.randn(16, 80, 3, generator=gen) * 0.3
    enc.conv2.weight[S1, S1] = torch.randn(16, 16, 3, generator=gen) * 0.3
    pos = torch.zeros_like(enc.positional_embedding)
    pos[torch.arange(pos.shape[0]), torch.as_tensor(_codes())] = 30.0
    enc.positional_embedding.copy_(pos)


def _set_decoder(dec, gen: torch.Generator) -> None:
    """A decoder whose cross-attention reads ``S2`` of region ``R``'s frames only."""
    d = dec.token_embedding.weight.shape[1]
    dec.token_embedding.weight.copy_(torch.randn(51864, d, generator=gen) * 0.5)
    dec.positional_embedding.copy_(torch.randn(448, d, generator=gen) * 0.1)
    for block in dec.blocks:
        for ln in (block.attn_ln, block.cross_attn_ln, block.mlp_ln):
            ln.weight.fill_(1.0)
        # cross-attention: every query attends to R's frames, reads S2 (moved info)
        block.cross_attn.query.bias[S0] = 0.0
        block.cross_attn.query.bias[_CODE_R] = 400.0
        block.cross_attn.key.weight[S0, S0] = torch.eye(16)
        block.cross_attn.value.weight[S2, S2] = torch.eye(16)
        block.cross_attn.out.weight[:, S2] = torch.randn(d, 16, generator=gen) * 3.0
    dec.ln.weight.fill_(1.0)


def planted_model(
    k: int | None, *, seed: int = 0, reads: tuple[int, ...] | None = None
) -> SpeechModel:
    """A 4-layer Whisper-architecture model whose block ``j`` moves region ``C_j`` into ``R``.

    ``k`` only names the model (the wiring is the same for every ``k``; which layer is
    the listen layer is decided by which region the stimuli corrupt). ``reads[j - 1]``
    rewires block ``j`` to read region ``C_reads[j-1]`` instead (a permutation of
    1..4): e.g. ``reads=(1, 3, 2, 4)`` moves ``C_2``'s listen layer from 2 to 3, the
    planted "after fine-tuning" model of E3.
    """
    reads = tuple(range(1, N_LAYERS + 1)) if reads is None else tuple(reads)
    if sorted(reads) != list(range(1, N_LAYERS + 1)):
        raise ValueError(f"reads must be a permutation of 1..{N_LAYERS}, got {reads}")
    gen = torch.Generator().manual_seed(seed)
    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=D, n_audio_head=1, n_audio_layer=N_LAYERS,
        n_vocab=51864, n_text_ctx=448, n_text_state=D, n_text_head=1, n_text_layer=1,
    )  # fmt: skip
    module = whisper.model.Whisper(dims)
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        enc = module.encoder
        _set_front_end(enc, gen)
        # one rotation for every block, so that no block is special by construction
        rotation = torch.linalg.qr(torch.randn(16, 16, generator=gen))[0]
        for j, block in enumerate(enc.blocks, start=1):
            block.attn_ln.weight[S0] = 1.0
            block.attn_ln.weight[S1] = 1.0
            block.attn_ln.eps = _LN_EPS
            block.mlp_ln.weight.fill_(1.0)
            # query: R's code -> C_j's code; every other code -> the background code
            # (silent padding, identical in every run), so only R frames gather content
            target = torch.zeros(16, 16)
            target[:, _CODE_BG] = 1.0
            target[_CODE_R] = 0.0
            target[_CODE_R, reads[j - 1]] = 1.0
            block.attn.query.weight[S0, S0] = target.T * 40.0
            block.attn.key.weight[S0, S0] = torch.eye(16) * 40.0
            # value: S1 content; out: into S2 (a random rotation)
            block.attn.value.weight[S1, S1] = torch.eye(16)
            block.attn.out.weight[S2, S1] = rotation * 200.0
        enc.ln_post.weight.fill_(1.0)
        _set_decoder(module.decoder, gen)
    name = "planted" if k is None else f"planted-k{k}"
    if reads != tuple(range(1, N_LAYERS + 1)):
        name += "-reads" + "".join(map(str, reads))
    return SpeechModel(name=name, module=module.eval(), source="listenkit.planted.encoder")


def _speechlike(rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    n = int(seconds * 16_000)
    t = np.arange(n) / 16_000
    f0 = rng.uniform(90, 220)
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    voiced = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
    return (0.1 * envelope * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)


def planted_pairs(k: int | None, n: int, *, seed: int = 0) -> list[Pair]:
    """Minimal pairs for a planted model: noise in region ``C_k`` only (``k`` given), or in
    every region with independent random strengths (``k=None``: no planted peak)."""
    rng = np.random.default_rng([seed, 0 if k is None else k])
    pairs = []
    for i in range(n):
        clean = np.zeros(10 * 16_000, dtype=np.float32)
        clean[: 3 * 16_000] = _speechlike(rng)  # loud part sets the log-mel clamp
        corrupt = clean.copy()
        regions = [k] if k is not None else list(range(1, N_LAYERS + 1))
        for j in regions:
            a, b = region_frames(j)
            strength = 0.05 if k is not None else rng.uniform(0.0, 0.08)
            segment = slice(a * FRAME_SAMPLES, b * FRAME_SAMPLES)
            noise = rng.standard_normal(segment.stop - segment.start)
            corrupt[segment] += (strength * noise).astype(np.float32)
        text = "planted listen layer test"
        pid = f"planted-{'none' if k is None else k}/{i:03d}"
        pairs.append(
            Pair(
                id=pid,
                attribute="planted",
                level="none" if k is None else f"C{k}",
                clean=Utterance(id=f"{pid}/clean", text=text, audio=clean),
                corrupt=Utterance(id=f"{pid}/corrupt", text=text, audio=corrupt),
            )
        )
    return pairs
