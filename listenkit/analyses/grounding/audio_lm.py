"""The grounding coefficient on an audio language model (Qwen2-Audio).

Same interventions and formulas as ``listenkit.analyses.grounding.whisper`` (Whisper),
with the text channel in the user turn (``AudioLM.build``). A stream at layer ``l``
is what layer ``l``'s self-attention reads from that stream's positions
(pre-registration v2: ``lm.self_kv``, the key and value projections): the audio
stream at the audio-token positions, the text stream at the text-context positions.

For each stimulus the two clips are padded with silence to the longer one's length so
that x and x_a have the same number of audio tokens, and the two texts must have the
same token count so that x and x_t line up. Backends: ``"hooks"`` (torch hooks) or
``"nnsight"`` (one nnsight trace per patched run; ``remote=True`` sends the traces to
NDIF, which needs ``NDIF_API_KEY`` and network access, and a model NDIF hosts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from listenkit.analyses.grounding.whisper import GroundingSweep
from listenkit.engine.hooks import capture, patched
from listenkit.engine.nnsight_import import nnsight_module
from listenkit.engine.site_tables import QWEN2_AUDIO_LM, Access
from listenkit.engine.sites import Site
from listenkit.models.qwen2_audio import AudioLM, LMInput
from listenkit.stimuli.conflict import align_flip
from listenkit.stimuli.types import ConflictStimulus

__all__ = ["RemoteUnavailableError", "check_remote_available", "lm_grounding_sweep"]

STREAM_COMPONENT = "lm.self_kv"
NDIF_REPO_ID = "Qwen/Qwen2-Audio-7B-Instruct"


class RemoteUnavailableError(RuntimeError):
    """NDIF remote execution is not possible here (no API key, no network, not hosted)."""


def _runs(lm: AudioLM, s: ConflictStimulus) -> tuple[LMInput, LMInput, LMInput]:
    if s.ref_audio is None or s.conflict_audio is None:
        raise ValueError(f"stimulus {s.stimulus_id!r} needs audio for both texts")
    al = align_flip(s.ref_text, s.conflict_text, lm.text_tokens)
    if not al.aligned:
        raise ValueError(f"stimulus {s.stimulus_id!r} cannot be used: {al.reason} under {lm.name}")
    start = len(al.prefix)
    rows = [(list(al.prefix) + list(al.ref_span), start, 1.0),
            (list(al.prefix) + list(al.conflict_span), start, -1.0)]  # fmt: skip
    pad = max(s.ref_audio.audio.size, s.conflict_audio.audio.size)
    x = lm.build(s.ref_audio.audio, al.conflict_tokens, rows, pad_to_samples=pad)
    xa = lm.build(s.conflict_audio.audio, al.conflict_tokens, rows, pad_to_samples=pad)
    xt = lm.build(s.ref_audio.audio, al.ref_tokens, rows, pad_to_samples=pad)
    if xa.audio_positions != x.audio_positions or xt.context_positions != x.context_positions:
        raise RuntimeError(f"stimulus {s.stimulus_id!r}: positions do not line up")
    return x, xa, xt


class _HookRunner:
    def __init__(self, lm: AudioLM, accesses: tuple[Access, ...]) -> None:
        self.lm = lm
        self.accesses = accesses

    @torch.inference_mode()
    def source(self, run: LMInput, layers: Sequence[int]) -> tuple[float, dict]:
        store: dict = {}
        with capture(self.lm.module, self.accesses, layers, store):
            logits = self.lm.module(**self.lm.forward_kwargs(run)).logits
        values = {layer: [store[(layer, k)] for k in range(len(self.accesses))] for layer in layers}
        return AudioLM.metric(logits, run), values

    @torch.inference_mode()
    def base(self, run: LMInput) -> float:
        return AudioLM.metric(self.lm.module(**self.lm.forward_kwargs(run)).logits, run)

    @torch.inference_mode()
    def patched(self, run: LMInput, layer: int, values: list, positions) -> float:
        index = torch.tensor(positions, dtype=torch.long)
        with patched(self.lm.module, self.accesses, layer, values, positions=index):
            logits = self.lm.module(**self.lm.forward_kwargs(run)).logits
        return AudioLM.metric(logits, run)


class _NNsightRunner:
    """The same runs as nnsight traces (locally, or on NDIF with ``remote=True``)."""

    def __init__(
        self, lm: AudioLM, accesses: tuple[Access, ...], *, remote: bool, repo_id: str
    ) -> None:
        self.lm = lm
        self.accesses = accesses
        self.remote = remote
        if not remote:
            self.traced = nnsight_module().NNsight(lm.module)
            return
        check_remote_available()
        try:  # NDIF runs its own copy, named by repo id; building the wrapper needs the Hub
            transformers_models = nnsight_module("nnsight.modeling.transformers")
            self.traced = transformers_models.TransformersModel(repo_id)
        except Exception as err:  # any failure here means "not reachable"
            raise RemoteUnavailableError(
                f"cannot set up NDIF remote execution for {repo_id!r}: {err}"
            ) from err

    def _envoy(self, access: Access, layer: int):
        node = self.traced
        for part in access.path.format(i=layer - 1).split("."):
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        return node

    def _trace(self, run: LMInput):
        kwargs = self.lm.forward_kwargs(run)
        return (
            self.traced.trace(**kwargs, remote=self.remote)
            if self.remote
            else (self.traced.trace(**kwargs))
        )

    @torch.inference_mode()
    def source(self, run: LMInput, layers: Sequence[int]) -> tuple[float, dict]:
        saved: dict = {}
        with self._trace(run):
            for layer in layers:
                for k, access in enumerate(self.accesses):
                    saved[(layer, k)] = self._envoy(access, layer).output.save()
            logits = self.traced.output.logits.save()
        values = {
            layer: [saved[(layer, k)].detach().clone() for k in range(len(self.accesses))]
            for layer in layers
        }
        return AudioLM.metric(logits, run), values

    @torch.inference_mode()
    def base(self, run: LMInput) -> float:
        with self._trace(run):
            logits = self.traced.output.logits.save()
        return AudioLM.metric(logits, run)

    @torch.inference_mode()
    def patched(self, run: LMInput, layer: int, values: list, positions) -> float:
        index = torch.tensor(positions, dtype=torch.long)
        with self._trace(run):
            for access, value in zip(self.accesses, values, strict=True):
                self._envoy(access, layer).output[:, index] = value[:, index]
            logits = self.traced.output.logits.save()
        return AudioLM.metric(logits, run)


def check_remote_available() -> None:
    """Raise ``RemoteUnavailableError`` unless an NDIF API key is configured."""
    if not nnsight_module().CONFIG.API.APIKEY:
        raise RemoteUnavailableError(
            "NDIF remote execution needs an API key: export NDIF_API_KEY=<key> (from "
            "https://login.ndif.us) or call nnsight.CONFIG.set_default_api_key(<key>); it "
            "also needs network access to ndif.us and a model NDIF hosts"
        )


def lm_grounding_sweep(
    lm: AudioLM,
    stimuli: Sequence[ConflictStimulus],
    *,
    floor: float = 1.0,
    layers: Sequence[int] | None = None,
    backend: str = "hooks",
    remote: bool = False,
    repo_id: str = NDIF_REPO_ID,
    progress: bool = True,
) -> GroundingSweep:
    """dA and dT margins at every LLM layer (or ``layers``) for each conflict stimulus.

    ``remote=True`` (with ``backend="nnsight"``) runs every trace on NDIF's copy of
    ``repo_id``; the inputs are still built here from ``lm``'s tokenizer.
    """
    if floor <= 0:
        raise ValueError(f"the exclusion floor must be positive, got {floor}")
    if not stimuli:
        raise ValueError("no conflict stimuli")
    if remote and backend != "nnsight":
        raise ValueError("remote=True runs through nnsight: pass backend='nnsight'")
    layers = tuple(range(1, lm.n_layers + 1)) if layers is None else tuple(layers)
    bad = [layer for layer in layers if not 1 <= layer <= lm.n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range; valid layers are 1..{lm.n_layers}")
    component = STREAM_COMPONENT
    accesses = QWEN2_AUDIO_LM[component]
    if backend == "hooks":
        runner = _HookRunner(lm, accesses)
    elif backend == "nnsight":
        runner = _NNsightRunner(lm, accesses, remote=remote, repo_id=repo_id)
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'hooks' or 'nnsight'")
    n = len(stimuli)
    m_x, m_a, m_t = np.empty(n), np.empty(n), np.empty(n)
    audio_p, text_p = np.empty((n, len(layers))), np.empty((n, len(layers)))
    for i, s in enumerate(tqdm(stimuli, disable=not progress, desc="gc", unit="stimulus")):
        x, xa, xt = _runs(lm, s)
        m_x[i] = runner.base(x)
        m_a[i], acts_a = runner.source(xa, layers)
        m_t[i], acts_t = runner.source(xt, layers)
        for j, layer in enumerate(layers):
            audio_p[i, j] = runner.patched(x, layer, acts_a[layer], x.audio_positions)
            text_p[i, j] = runner.patched(x, layer, acts_t[layer], x.context_positions)
    return GroundingSweep(
        ids=tuple(s.stimulus_id for s in stimuli),
        flip_types=tuple(s.flip_type for s in stimuli),
        layers=layers,
        m_x=m_x,
        m_audio_source=m_a,
        m_text_source=m_t,
        audio_patched=audio_p,
        text_patched=text_p,
        floor=float(floor),
        audio_site=Site(component=component, positions="audio"),
        text_site=Site(component=component, positions="context"),
    )
