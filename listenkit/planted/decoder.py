"""Whisper models with a planted grounding structure: known answers for the gc machinery.

The real openai-whisper code path with seeded random weights (a 1-layer encoder, a
4-layer decoder) and two surgical changes:

- ``audio_layer=k``: every decoder block's cross-attention output projection is zero
  except block ``k``'s, so the audio reaches the output only through the audio
  stream at layer ``k``: dA(k) = 1, dA(l) = 0 elsewhere, and ``l*_gc = k``.
- ``text_layer=k``: in every block but ``k`` no position attends to the prompt
  positions (prompt positions included), so the prompt is read at block ``k`` only:
  with the v2 read streams (self-attention keys and values at the prompt positions),
  dT(k) = 1 and dT(l) = 0 elsewhere, and nothing is forced at the last layer.

``planted_conflicts`` gives conflict stimuli with synthetic audio (the model is
random; only the texts' token alignment and distinct audio matter).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import whisper
from whisper.model import MultiHeadAttention

from listenkit.models.qwen2_audio import AudioLM
from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.conflict import align_flip, conflict_templates
from listenkit.stimuli.types import FLIP_TYPES, ConflictStimulus

__all__ = ["N_DECODER_LAYERS", "planted_conflicts", "planted_decoder_model"]

N_DECODER_LAYERS = 4


class _PromptBlindAttention(MultiHeadAttention):
    """Causal self-attention where positions after the prompt cannot see the prompt.

    The prompt of each row is the span after ``<|startofprev|>`` (position 0) up to the
    start-of-transcript token; the rows' tokens are read by a decoder pre-hook.
    """

    sot_prev: int
    sot: int
    tokens: torch.Tensor | None = None
    # no position, the prompt's own included, attends to the prompt positions

    def qkv_attention(self, q, k, v, mask=None):
        n_batch, n_ctx, n_state = q.shape
        q = q.view(n_batch, n_ctx, self.n_head, -1).permute(0, 2, 1, 3)
        k = k.view(n_batch, n_ctx, self.n_head, -1).permute(0, 2, 1, 3)
        v = v.view(n_batch, n_ctx, self.n_head, -1).permute(0, 2, 1, 3)
        allowed = torch.ones(n_ctx, n_ctx, dtype=torch.bool).tril()[None].repeat(n_batch, 1, 1)
        for row in range(n_batch):
            tokens = self.tokens[row]
            if int(tokens[0]) != self.sot_prev:
                continue
            end = int(torch.nonzero(tokens == self.sot)[0, 0])  # prompt = positions 1..end-1
            allowed[row, 1:, 1:end] = False
        scale = (n_state // self.n_head) ** -0.5
        scores = (q @ k.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        out = F.softmax(scores.float(), dim=-1).to(q.dtype) @ v
        return out.permute(0, 2, 1, 3).flatten(start_dim=2), None


def planted_decoder_model(
    audio_layer: int, *, text_layer: int | None = None, seed: int = 0
) -> SpeechModel:
    """A Whisper-architecture model (English vocabulary) reading audio only at
    ``audio_layer`` (and, with ``text_layer``, the prompt only at ``text_layer``)."""
    for name, value in (("audio_layer", audio_layer), ("text_layer", text_layer)):
        if value is not None and not 1 <= value <= N_DECODER_LAYERS:
            raise ValueError(f"{name} must be 1..{N_DECODER_LAYERS}, got {value}")
    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
        n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2,
        n_text_layer=N_DECODER_LAYERS,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = whisper.model.Whisper(dims)
        with torch.no_grad():
            # openai-whisper leaves this parameter uninitialised (checkpoints set it)
            module.decoder.positional_embedding.normal_(0.0, 0.1)
            for p in module.parameters():
                if p.dim() == 2:  # Linear weights: larger than the default so margins are nats
                    p.mul_(3.0)
            for j, block in enumerate(module.decoder.blocks, start=1):
                if j == text_layer:
                    block.attn.out.weight.mul_(12.0)  # a strong prompt read
                if j == audio_layer:
                    block.cross_attn.out.weight.mul_(4.0)  # a strong audio read
                else:
                    block.cross_attn.out.weight.zero_()
                    block.cross_attn.out.bias.zero_()
    model = SpeechModel(
        name=f"planted-decoder-k{audio_layer}" + (f"-text{text_layer}" if text_layer else ""),
        module=module.eval(),
        source="listenkit.planted.decoder",
    )
    if text_layer is not None:
        blind = []
        for j, block in enumerate(module.decoder.blocks, start=1):
            if j == text_layer:
                continue
            block.attn.__class__ = _PromptBlindAttention
            block.attn.sot_prev = model.tokenizer.sot_prev
            block.attn.sot = model.tokenizer.sot
            blind.append(block.attn)

        def remember_tokens(_module, args):
            for attn in blind:
                attn.tokens = args[0]

        module.decoder.register_forward_pre_hook(remember_tokens)
    return model


def _tone(rng: np.random.Generator) -> np.ndarray:
    """2 s of a harmonic tone at a random f0 (100-1500 Hz): distinct mels per clip."""
    time = np.arange(2 * 16_000) / 16_000
    f0 = rng.uniform(100, 1500)
    return (sum(np.sin(2 * np.pi * f0 * h * time) / h for h in range(1, 4)) * 0.1).astype(
        np.float32
    )


def planted_conflicts(
    model: SpeechModel | AudioLM, n: int, *, seed: int = 0
) -> list[ConflictStimulus]:
    """``n`` templated conflicts aligned under ``model.text_tokens``, cycling flip types,
    with a distinct random harmonic tone as the audio of each text."""
    rng = np.random.default_rng(seed)
    templates = conflict_templates()
    out: list[ConflictStimulus] = []
    index = dict.fromkeys(FLIP_TYPES, 0)
    while len(out) < n:
        flip_type = FLIP_TYPES[len(out) % len(FLIP_TYPES)]
        t = templates[flip_type][index[flip_type]]
        index[flip_type] += 1
        if not align_flip(t.ref_text, t.conflict_text, model.text_tokens).aligned:
            continue
        sid = f"planted-{flip_type}-{index[flip_type]:03d}"

        out.append(t.stimulus(sid, _tone(rng), _tone(rng)))
    return out
