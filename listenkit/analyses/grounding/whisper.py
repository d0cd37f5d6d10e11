"""The grounding coefficient on Whisper's decoder: interchange interventions per layer.

For a conflict stimulus (audio says ``ref_text``, the previous-text prompt says
``conflict_text``) the margin ``m = log p(a) - log p(b)`` is scored at the flipped
span, teacher forced on the shared transcript prefix
(``listenkit.analyses.grounding.margins``). Three runs (Geiger et al. interchange
interventions):

- base ``x``: audio of ``ref_text``, prompt ``conflict_text``;
- audio source ``x_a``: audio of ``conflict_text``, prompt ``conflict_text``;
- text source ``x_t``: audio of ``ref_text``, prompt ``ref_text``.

Per decoder layer ``l`` (from 1):

    dA(l) = (m(x) - m(x <- audio stream of x_a at l)) / (m(x) - m(x_a))
    dT(l) = (m(x <- text stream of x_t at l) - m(x)) / (m(x_t) - m(x))

A stream at layer ``l`` is what block ``l``'s attention *reads* from that stream's
positions (pre-registration v2): the audio stream is block
``l``'s cross-attention keys and values (``decoder.cross_kv``), the text stream
block ``l``'s self-attention keys and values at the prompt positions
(``decoder.self_kv``; the two prompts have the same token count, so positions line
up). Queries stay the base run's (v1 patched the residual *after* block ``l``, which
after the last block feeds nothing: dT(N) = 0 by construction). A stimulus is used
iff ``m(x) - m(x_a) >= floor`` and ``m(x_t) - m(x) >= floor`` (nats; signed floors,
v2). dA and dT are ratios of means over the used stimuli (``da_ratio``,
``dt_ratio``); gc and its statistics: ``listenkit.stats.grounding``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from listenkit.analyses.effects import StimulusEffects
from listenkit.engine.batch import PatchItem, RunInput
from listenkit.engine.metrics import logit_diff_rows
from listenkit.engine.patching import Progress, run_patching
from listenkit.engine.sites import Site
from listenkit.models.speech_model import SpeechModel
from listenkit.stats import RatioOfMeans
from listenkit.stimuli.conflict import align_flip
from listenkit.stimuli.types import ConflictStimulus

__all__ = [
    "AUDIO_STREAM",
    "TEXT_STREAM",
    "GroundingSweep",
    "conflict_items",
    "grounding_sweep",
]

AUDIO_STREAM = Site(component="decoder.cross_kv")
TEXT_STREAM = Site(component="decoder.self_kv", positions="prompt")


@dataclass(frozen=True, kw_only=True)
class GroundingSweep(StimulusEffects):
    """Per-stimulus margins (nats) of the three runs and of every patched run."""

    ids: tuple[str, ...]
    flip_types: tuple[str, ...]
    layers: tuple[int, ...]
    m_x: np.ndarray  # [n]
    m_audio_source: np.ndarray  # [n] m(x_a)
    m_text_source: np.ndarray  # [n] m(x_t)
    audio_patched: np.ndarray  # [n, layers] m(x <- audio stream of x_a)
    text_patched: np.ndarray  # [n, layers] m(x <- text stream of x_t)
    floor: float
    audio_site: Site = AUDIO_STREAM
    text_site: Site = TEXT_STREAM

    @property
    def audio_gap(self) -> np.ndarray:
        """``m(x) - m(x_a)``: how much the audio moves the margin."""
        return self.m_x - self.m_audio_source

    @property
    def text_gap(self) -> np.ndarray:
        """``m(x_t) - m(x)``: how much the text channel moves the margin."""
        return self.m_text_source - self.m_x

    def gaps(self) -> tuple[np.ndarray, ...]:
        """Signed floors (v2): the audio must favour ``a`` (``m(x) - m(x_a) >= floor``) and
        the text channel must favour ``b`` (``m(x_t) - m(x) >= floor``)."""
        return (self.audio_gap, self.text_gap)

    def ratio(self, rows: np.ndarray | None = None, *, stream: str = "audio") -> RatioOfMeans:
        """dA (``stream="audio"``) or dT (``"text"``) as a ratio of means over the included
        stimuli (or ``rows`` of them)."""
        if stream not in ("audio", "text"):
            raise ValueError(f"stream must be 'audio' or 'text', got {stream!r}")
        keep = self.rows(rows)
        if stream == "audio":
            return RatioOfMeans(
                self.m_x[keep, None] - self.audio_patched[keep], self.audio_gap[keep]
            )
        return RatioOfMeans(self.text_patched[keep] - self.m_x[keep, None], self.text_gap[keep])

    @property
    def failures(self) -> np.ndarray:
        """Text-dominant failures: ``m(x) < 0`` (the model prefers the text's version)."""
        return self.m_x < 0

    def da(self) -> np.ndarray:
        """Per-stimulus dA of the included stimuli, ``[n_included, layers]`` (evidence)."""
        keep = self.included
        return (self.m_x[keep, None] - self.audio_patched[keep]) / self.audio_gap[keep, None]

    def dt(self) -> np.ndarray:
        """Per-stimulus dT of the included stimuli, ``[n_included, layers]`` (evidence)."""
        keep = self.included
        return (self.text_patched[keep] - self.m_x[keep, None]) / self.text_gap[keep, None]

    def da_ratio(self, rows: np.ndarray | None = None) -> RatioOfMeans:
        """dA: ``sum (m(x) - m(x <- a)) / sum (m(x) - m(x_a))`` (``ratio(stream="audio")``)."""
        return self.ratio(rows, stream="audio")

    def dt_ratio(self, rows: np.ndarray | None = None) -> RatioOfMeans:
        """dT: ``sum (m(x <- t) - m(x)) / sum (m(x_t) - m(x))`` (``ratio(stream="text")``)."""
        return self.ratio(rows, stream="text")

    def exclusions(self) -> dict[str, dict[str, int]]:
        """Excluded stimuli per flip type and reason (a stimulus may fail both floors)."""
        out: dict[str, Counter[str]] = {}
        audio_low = self.audio_gap < self.floor
        text_low = self.text_gap < self.floor
        for ft, a, t in zip(self.flip_types, audio_low, text_low, strict=True):
            counts = out.setdefault(ft, Counter())
            counts["audio floor"] += int(a)
            counts["text floor"] += int(t)
            counts["excluded"] += int(a or t)
            counts["total"] += 1
        return {ft: dict(c) for ft, c in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "flip_types": list(self.flip_types),
            "layers": list(self.layers),
            "floor": self.floor,
            "audio_site": self.audio_site.to_dict(),
            "text_site": self.text_site.to_dict(),
            "m_x": self.m_x.tolist(),
            "m_audio_source": self.m_audio_source.tolist(),
            "m_text_source": self.m_text_source.tolist(),
            "audio_patched": self.audio_patched.tolist(),
            "text_patched": self.text_patched.tolist(),
        }


def conflict_items(
    model: SpeechModel, stimuli: Sequence[ConflictStimulus]
) -> tuple[list[PatchItem], list[PatchItem]]:
    """The engine's items: (x_a -> x) for the audio stream, (x_t -> x) for the text stream."""
    audio_items, text_items = [], []
    for s in stimuli:
        if s.ref_audio is None or s.conflict_audio is None:
            raise ValueError(f"stimulus {s.stimulus_id!r} needs audio for both texts")
        al = align_flip(s.ref_text, s.conflict_text, model.text_tokens)
        if not al.aligned:
            raise ValueError(
                f"stimulus {s.stimulus_id!r} cannot be used: {al.reason} under {model.name}'s "
                "tokenizer (build the set with conflict_stimuli(encode=model.text_tokens, ...))"
            )
        span = (al.prefix, al.ref_span, al.conflict_span)
        rows_x = logit_diff_rows(model, *span, prompt=al.conflict_tokens)
        rows_xt = logit_diff_rows(model, *span, prompt=al.ref_tokens)
        x = RunInput(audio=s.ref_audio.audio, rows=rows_x)
        audio_items.append(
            PatchItem(
                id=s.stimulus_id,
                source=RunInput(audio=s.conflict_audio.audio, rows=rows_x),
                base=x,
            )
        )
        prompt_positions = tuple(range(1, 1 + len(al.conflict_tokens)))  # after <|startofprev|>
        text_items.append(
            PatchItem(
                id=s.stimulus_id,
                source=RunInput(audio=s.ref_audio.audio, rows=rows_xt),
                base=x,
                position_sets={"prompt": prompt_positions},
            )
        )
    return audio_items, text_items


def grounding_sweep(
    model: SpeechModel,
    stimuli: Sequence[ConflictStimulus],
    *,
    floor: float = 1.0,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    backend: str = "hooks",
    progress: Progress = True,
) -> GroundingSweep:
    """Run the audio- and text-stream interchange interventions at every decoder layer:
    the audio stream is block l's cross-attention keys and values (``AUDIO_STREAM``),
    the text stream its self-attention keys and values at the prompt (``TEXT_STREAM``)."""
    audio_site, text_site = AUDIO_STREAM, TEXT_STREAM
    if floor <= 0:
        raise ValueError(f"the exclusion floor must be positive, got {floor}")
    if not stimuli:
        raise ValueError("no conflict stimuli")
    audio_items, text_items = conflict_items(model, stimuli)
    options = {"layers": layers, "batch_size": batch_size, "backend": backend, "progress": False}
    parts: list[tuple] = []
    chunk = 4 * batch_size  # bounds the encoder memo to 2 x chunk encoder outputs
    report = progress if callable(progress) else None
    with tqdm(total=len(stimuli), disable=progress is not True, desc="gc", unit="stimulus") as bar:
        for start in range(0, len(stimuli), chunk):
            memo: dict = {}  # the text run's audio (ref) was encoded in the audio run: reuse
            a_items, t_items = audio_items[start : start + chunk], text_items[start : start + chunk]
            [audio] = run_patching(model, a_items, [audio_site], encoder_memo=memo, **options)
            [text] = run_patching(model, t_items, [text_site], encoder_memo=memo, **options)
            if not np.allclose(audio.base, text.base, rtol=0, atol=1e-4):
                worst = float(np.abs(audio.base - text.base).max())
                raise RuntimeError(f"the base run differs between the sweeps by {worst:.2e} nats")
            parts.append((audio, text))
            bar.update(len(a_items))
            if report is not None:
                report(start + len(a_items), len(stimuli))
    audio_parts, text_parts = [p[0] for p in parts], [p[1] for p in parts]
    return GroundingSweep(
        ids=tuple(s.stimulus_id for s in stimuli),
        flip_types=tuple(s.flip_type for s in stimuli),
        layers=audio_parts[0].layers,
        m_x=np.concatenate([p.base for p in audio_parts]),
        m_audio_source=np.concatenate([p.source for p in audio_parts]),
        m_text_source=np.concatenate([p.source for p in text_parts]),
        audio_patched=np.concatenate([p.patched for p in audio_parts]),
        text_patched=np.concatenate([p.patched for p in text_parts]),
        floor=float(floor),
        audio_site=audio_site,
        text_site=text_site,
    )
