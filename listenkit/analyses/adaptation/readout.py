"""A classifier head on Whisper's encoder, and patching sweeps that read it.

The head (``ProsodyHead``) is linear on the encoder output mean-pooled over the
speech frames only (frame ``t`` covers 20 ms; ``n = ceil(samples / 320)`` frames,
not the 30-s padding):

    logits = W . (1/n) sum_{t < n} h_t + b

The sweep metric of a pair (class ``c`` source, neutral base) is the head's logit
difference ``m = logit_c - logit_neutral``; denoising patches the source run's
``encoder.attn_out`` at layer ``l`` into the base run (restarting at block ``l``) and
reads the head. The layer analyses of the paper: each layer's relative contribution
``||attn_out_l|| / ||residual entering l||`` (Frobenius norms over the speech frames)
and a logit lens (the head applied to every layer's pooled, ``ln_post``-normalised
residual: accuracy per layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from listenkit.engine.batch import check_finite
from listenkit.engine.hooks import capture, capture_block_inputs
from listenkit.engine.hooks import patched as patched_site
from listenkit.engine.site_tables import OPENAI_WHISPER
from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.types import Pair, Utterance

__all__ = [
    "FRAME_SAMPLES",
    "READOUT_SITES",
    "PooledSweep",
    "ProsodyHead",
    "ReadoutSweep",
    "layer_contributions",
    "logit_lens_accuracy",
    "pooled",
    "pooled_sweep",
    "readout_sweep",
    "speech_frames",
]

FRAME_SAMPLES = 320  # one encoder frame = 20 ms at 16 kHz
N_FRAMES = 1500


def speech_frames(n_samples: int) -> int:
    """Encoder frames that hold audio: ``ceil(n_samples / 320)``, at most 1500."""
    if n_samples < 1:
        raise ValueError("no audio samples")
    return min(N_FRAMES, math.ceil(n_samples / FRAME_SAMPLES))


def _mask(n_frames: Sequence[int], device) -> torch.Tensor:
    """``[B, 1500, 1]`` weights ``1/n`` on each item's speech frames, 0 elsewhere."""
    n = torch.as_tensor(list(n_frames), device=device)
    frames = torch.arange(N_FRAMES, device=device)
    return ((frames[None] < n[:, None]).float() / n[:, None].float())[..., None]


def pooled(features: torch.Tensor, n_frames: Sequence[int]) -> torch.Tensor:
    """Mean of ``features [B, 1500, d]`` over each item's speech frames: ``[B, d]``."""
    return (features * _mask(n_frames, features.device).to(features.dtype)).sum(dim=1)


class ProsodyHead(nn.Module):
    """Linear classifier on pooled encoder output: ``[B, 1500, d] -> [B, classes]``."""

    def __init__(self, d_model: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, n_classes)

    def forward(self, features: torch.Tensor, n_frames: Sequence[int]) -> torch.Tensor:
        return self.linear(pooled(features, n_frames))


@dataclass(frozen=True)
class ReadoutSweep:
    """Per-pair metric of the source, base and patched runs (``patched [n, layers]``)."""

    ids: list[str]
    layers: tuple[int, ...]
    source: np.ndarray
    base: np.ndarray
    patched: np.ndarray

    def included(self, floor: float) -> np.ndarray:
        """Signed floor: ``m_source - m_base >= floor``."""
        return (self.source - self.base) >= floor

    def num_den(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(m_patched - m_base, m_source - m_base)`` of the selected pairs (ratio of means)."""
        return (self.patched[rows] - self.base[rows, None], (self.source - self.base)[rows])


def _logit_difference(head: ProsodyHead, pooled_features: torch.Tensor, labels) -> np.ndarray:
    logits = head.linear(pooled_features.to(head.linear.weight.device)).double()
    idx = torch.arange(len(labels))
    return (logits[idx, torch.as_tensor(labels)] - logits[:, 0]).cpu().numpy()


READOUT_SITES = ("encoder.attn_out", "encoder.mlp_out", "encoder.block_write", "encoder.resid")


@dataclass(frozen=True)
class PooledSweep:
    """The pooled encoder output (``[n, d]``; ``patched [n, layers, d]``) of every run of
    a denoising sweep: any linear head reads it afterwards (``read``), so several
    readouts of one encoder cost one sweep."""

    ids: list[str]
    layers: tuple[int, ...]
    labels: list[int]
    source: torch.Tensor
    base: torch.Tensor
    patched: torch.Tensor

    @torch.inference_mode()
    def read(self, head: ProsodyHead) -> ReadoutSweep:
        """The sweep as read by ``head``: ``m = logit_c - logit_neutral`` per run."""
        head = head.eval()
        # layer by layer: the same [n, d] shapes as source and base, so the same sums
        patched = np.stack(
            [
                _logit_difference(head, self.patched[:, j], self.labels)
                for j in range(len(self.layers))
            ],
            axis=1,
        )
        out = ReadoutSweep(
            ids=list(self.ids),
            layers=self.layers,
            source=_logit_difference(head, self.source, self.labels),
            base=_logit_difference(head, self.base, self.labels),
            patched=patched,
        )
        check_finite("readout metric", out.patched, out.ids)
        check_finite("source readout", out.source, out.ids)
        check_finite("base readout", out.base, out.ids)
        return out


@torch.inference_mode()
def pooled_sweep(
    model: SpeechModel,
    pairs: Sequence[Pair],
    *,
    site: str = "encoder.attn_out",
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    done: MutableMapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
) -> PooledSweep:
    """Denoising sweep of the pooled encoder output: source = ``pair.clean`` (class
    ``c``, label in ``pair.meta['label']``), base = ``pair.corrupt`` (neutral, label 0),
    both the same length; ``site`` at layer ``l`` is patched from the source run into
    the base run (restarting at block ``l``). ``done`` (batch start -> its pooled
    source, base and patched arrays) holds finished batches: taken from it, not
    recomputed, and every new batch is added (a checkpoint to resume from)."""
    if not pairs:
        raise ValueError("no pairs")
    if site not in READOUT_SITES:
        raise ValueError(f"readout sweeps patch one of {READOUT_SITES}, got {site!r}")
    for p in pairs:
        if p.clean.audio.size != p.corrupt.audio.size:
            raise ValueError(f"pair {p.id}: source and base differ in length (not aligned)")
    layers = tuple(range(1, model.encoder_layers + 1)) if layers is None else tuple(layers)
    module, accesses = model.module, OPENAI_WHISPER[site]
    source, base, patched = [], [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        if done is not None and start in done:
            for out, array in zip((source, base, patched), done[start], strict=True):
                out.append(torch.from_numpy(np.asarray(array)))
            if progress is not None:
                progress(start + len(chunk), len(pairs))
            continue
        frames = [speech_frames(p.corrupt.audio.size) for p in chunk]
        acts: dict = {}
        with capture(module, accesses, layers, acts):
            source.append(
                pooled(module.encoder(model.log_mel([p.clean.audio for p in chunk])), frames)
            )
        inputs: dict = {}
        with capture_block_inputs(module.encoder.blocks, layers, inputs):
            base.append(
                pooled(module.encoder(model.log_mel([p.corrupt.audio for p in chunk])), frames)
            )
        per_layer = []
        for layer in layers:
            stored = [acts[(layer, k)] for k in range(len(accesses))]
            with patched_site(module, accesses, layer, stored):
                x = inputs[layer]
                for block in module.encoder.blocks[layer - 1 :]:
                    x = block(x)
                per_layer.append(pooled(module.encoder.ln_post(x), frames))
        patched.append(torch.stack(per_layer, dim=1))
        if done is not None:
            done[start] = tuple(out[-1].float().cpu().numpy() for out in (source, base, patched))
        if progress is not None:
            progress(start + len(chunk), len(pairs))
    return PooledSweep(
        ids=[p.id for p in pairs],
        layers=layers,
        labels=[int(p.meta["label"]) for p in pairs],
        source=torch.cat(source).float().cpu(),
        base=torch.cat(base).float().cpu(),
        patched=torch.cat(patched).float().cpu(),
    )


def readout_sweep(
    model: SpeechModel,
    head: ProsodyHead,
    pairs: Sequence[Pair],
    *,
    site: str = "encoder.attn_out",
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> ReadoutSweep:
    """``pooled_sweep`` read by ``head``: ``m = logit_c - logit_neutral``."""
    sweep = pooled_sweep(model, pairs, site=site, layers=layers, batch_size=batch_size,
                         progress=progress)  # fmt: skip
    return sweep.read(head)


def _layer_residuals(model: SpeechModel, audio: Sequence[np.ndarray]) -> dict[int, torch.Tensor]:
    """The residual stream after each encoder block (before ``ln_post``), from 1."""
    module, out = model.module, {}
    handles = [
        block.register_forward_hook(lambda _m, _a, y, key=i: out.__setitem__(key, y.detach()))
        for i, block in enumerate(module.encoder.blocks, start=1)
    ]
    try:
        module.encoder(model.log_mel(list(audio)))
    finally:
        for h in handles:
            h.remove()
    return out


@torch.inference_mode()
def logit_lens_accuracy(
    model: SpeechModel, head: ProsodyHead, utterances: Sequence[Utterance], *, batch_size: int = 8
) -> list[float]:
    """Accuracy per layer of the head applied to ``ln_post`` of each layer's pooled
    residual (the last layer's value is the head's own accuracy)."""
    head = head.to(model.device).eval()
    correct = np.zeros(model.encoder_layers)
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        frames = [speech_frames(u.audio.size) for u in chunk]
        labels = torch.as_tensor([int(u.meta["label"]) for u in chunk])
        residuals = _layer_residuals(model, [u.audio for u in chunk])
        for layer, x in residuals.items():
            logits = head(model.module.encoder.ln_post(x), frames)
            correct[layer - 1] += float((logits.argmax(-1).cpu() == labels).sum())
    return (correct / len(utterances)).round(6).tolist()


@torch.inference_mode()
def layer_contributions(
    model: SpeechModel, audio: Sequence[np.ndarray | Utterance], *, batch_size: int = 8
) -> list[float]:
    """Mean over utterances of ``||attn_out_l|| / ||residual entering block l||`` per
    layer (Frobenius norms over the speech frames)."""
    audio = [u.audio if isinstance(u, Utterance) else np.asarray(u) for u in audio]
    if not audio:
        raise ValueError("no audio")
    module, accesses = model.module, OPENAI_WHISPER["encoder.attn_out"]
    layers = tuple(range(1, model.encoder_layers + 1))
    total = np.zeros(len(layers))
    for start in range(0, len(audio), batch_size):
        chunk = audio[start : start + batch_size]
        frames = [speech_frames(a.size) for a in chunk]
        acts: dict = {}
        inputs: dict = {}
        with (
            capture(module, accesses, layers, acts),
            capture_block_inputs(module.encoder.blocks, layers, inputs),
        ):
            module.encoder(model.log_mel(chunk))
        for j, layer in enumerate(layers):
            for i, n in enumerate(frames):
                write = acts[(layer, 0)][i, :n].norm()
                resid = inputs[layer][i, :n].norm()
                total[j] += float(write / resid)
    return (total / len(audio)).round(6).tolist()
