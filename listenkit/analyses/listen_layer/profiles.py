"""Correlational profiles: linear CKA, activation-norm ratios, and the decoder logit lens.

- ``linear_cka(X, Y)`` for [n, d] matrices with centred columns:
  ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``; 1 for identical
  representations, invariant to orthogonal transforms and isotropic scaling.
- ``norm_ratio(clean, corrupt)``: mean over frames of ``||h_corrupt|| / ||h_clean||``.
- ``encoder_profiles``: both, per encoder layer (layer 0 is the conv front end output),
  for a batch of minimal pairs.
- ``logit_lens``: the decoder's unembedding applied to an intermediate decoder
  residual (after the final LayerNorm), per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from listenkit.engine.hooks import capture_block_inputs
from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.types import Pair

__all__ = ["EncoderProfiles", "encoder_profiles", "linear_cka", "logit_lens", "norm_ratio"]


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA between representations ``x`` [n, d1] and ``y`` [n, d2] of the same n items."""
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"need [n, d] matrices with the same n, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if float(denom) == 0.0:
        raise ValueError("CKA is undefined for a constant representation")
    return float(cross / denom)


def norm_ratio(clean: torch.Tensor, corrupt: torch.Tensor) -> float:
    """Mean over frames of ``||h_corrupt[t]|| / ||h_clean[t]||`` for [frames, d] activations."""
    return float((corrupt.double().norm(dim=-1) / clean.double().norm(dim=-1)).mean())


@dataclass(frozen=True, kw_only=True)
class EncoderProfiles:
    """Per pair and per layer ``0..N`` (0 = conv front end): CKA and norm ratio."""

    ids: tuple[str, ...]
    cka: np.ndarray  # [n_pairs, N + 1]
    norm_ratio: np.ndarray  # [n_pairs, N + 1]


@torch.inference_mode()
def encoder_profiles(
    model: SpeechModel,
    pairs: Sequence[Pair],
    *,
    batch_size: int = 8,
    frames: str = "speech",
) -> EncoderProfiles:
    """CKA(clean, corrupt) and the norm ratio of the residual stream after each encoder layer.

    ``frames="speech"`` uses the encoder frames covering the longer of the two
    utterances (padding frames excluded); ``"all"`` uses all 1500.
    """
    n_layers = model.encoder_layers
    cka = np.empty((len(pairs), n_layers + 1))
    ratio = np.empty((len(pairs), n_layers + 1))
    for start in range(0, len(pairs), batch_size):
        chunk = list(pairs[start : start + batch_size])
        states = []
        for audio in ([p.clean.audio for p in chunk], [p.corrupt.audio for p in chunk]):
            inputs: dict[int, torch.Tensor] = {}
            with capture_block_inputs(model.module.encoder.blocks, range(1, n_layers + 1), inputs):
                out = model.module.encoder(
                    model.log_mel(audio).reshape(len(chunk), model.n_mels, -1)
                )
            # residual after layer l = input of block l+1; after the last block = pre-ln_post
            after = [inputs[layer] for layer in range(1, n_layers + 1)]
            last = _last_residual(model, inputs[n_layers])
            states.append([*after, last])
        for i, pair in enumerate(chunk):
            n_frames = 1500
            if frames == "speech":
                samples = max(pair.clean.audio.size, pair.corrupt.audio.size)
                n_frames = min(1500, int(np.ceil(samples / 320)))
            for layer in range(n_layers + 1):
                h_clean = states[0][layer][i, :n_frames]
                h_corrupt = states[1][layer][i, :n_frames]
                cka[start + i, layer] = linear_cka(h_clean, h_corrupt)
                ratio[start + i, layer] = norm_ratio(h_clean, h_corrupt)
        del out
    return EncoderProfiles(ids=tuple(p.id for p in pairs), cka=cka, norm_ratio=ratio)


def _last_residual(model: SpeechModel, block_input: torch.Tensor) -> torch.Tensor:
    return model.module.encoder.blocks[-1](block_input)


@torch.inference_mode()
def logit_lens(model: SpeechModel, audio: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
    """``[decoder_layers, len(tokens), vocab]`` log-probs from each decoder layer's residual,
    read through the final LayerNorm and the tied unembedding (``tokens`` = decoder input)."""
    features = model.encode(model.log_mel(audio))
    decoder = model.module.decoder
    inputs: dict[int, torch.Tensor] = {}
    layers = range(1, model.decoder_layers + 1)
    with capture_block_inputs(decoder.blocks, layers, inputs):
        model.module.decoder(torch.tensor([list(tokens)], device=model.device), features)
    residuals = [inputs[layer] for layer in range(2, model.decoder_layers + 1)]
    residuals.append(decoder.blocks[-1](inputs[model.decoder_layers], features, mask=decoder.mask))
    out = []
    for x in residuals:
        logits = decoder.ln(x) @ decoder.token_embedding.weight.to(x.dtype).T
        out.append(torch.log_softmax(logits.double(), dim=-1)[0].cpu().numpy())
    return np.stack(out)
