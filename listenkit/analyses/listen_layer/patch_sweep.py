"""``sweep``: the researcher's entry point for minimal-pair patching sweeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from listenkit.analyses.listen_layer.result import Sweep
from listenkit.engine.batch import PatchItem, RunInput, ScoringRow
from listenkit.engine.metrics import logit_diff_rows, ref_logprob_rows
from listenkit.engine.patching import run_patching
from listenkit.engine.sites import COMPONENTS, Site
from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.types import Pair

__all__ = ["METRICS", "sweep"]

METRICS = ("ref_logprob", "logit_diff")
REFERENCES = ("text", "greedy")
RowsFn = Callable[[SpeechModel, Pair], tuple[ScoringRow, ...]]


def _as_sites(site: Site | str | Sequence[Site | str]) -> list[Site]:
    raw = [site] if isinstance(site, (Site, str)) else list(site)
    sites = []
    for s in raw:
        if isinstance(s, str):
            if s not in COMPONENTS:
                Site(component=s)  # raises with the list of valid components
            s = Site(component=s)
        sites.append(s)
    return sites


def _rows_for(metric: str, model: SpeechModel, pair: Pair, transcript: list[int]):
    if metric == "ref_logprob":
        return ref_logprob_rows(model, transcript)
    candidates = pair.meta.get("continuations")
    if not candidates or len(candidates) != 2:
        raise ValueError(
            f"pair {pair.id!r}: logit_diff needs meta['continuations'] = [a, b] "
            "(and optionally meta['prefix'])"
        )
    prefix = model.text_tokens(pair.meta["prefix"]) if pair.meta.get("prefix") else []
    a, b = (model.tokenizer.encode(" " + c.strip()) for c in candidates)
    return logit_diff_rows(model, prefix, a, b)


def sweep(
    model: SpeechModel,
    pairs: Sequence[Pair],
    site: Site | str | Sequence[Site | str],
    metric: str = "ref_logprob",
    *,
    reference: str = "text",
    mode: str = "denoise",
    layers: Sequence[int] | None = None,
    floor: float = 1.0,
    batch_size: int = 8,
    backend: str = "hooks",
    progress: bool = True,
) -> Sweep | list[Sweep]:
    """Patch ``site`` at every layer (or ``layers``) for each minimal pair.

    ``metric="ref_logprob"`` scores a reference transcript: the pair's text
    (``reference="text"``) or the clean audio's own greedy transcript
    (``reference="greedy"``, so the metric measures recovery of the clean behaviour).
    ``mode="denoise"`` restores clean activations into the corrupt run; ``"noise"``
    puts corrupt activations into the clean run. Pairs with
    ``|m_clean - m_corrupt| < floor`` (nats) are excluded and counted.
    Several sites share the clean and corrupt runs; then a list is returned.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; use 'text' or 'greedy'")
    if mode not in ("denoise", "noise"):
        raise ValueError(f"mode must be 'denoise' or 'noise', got {mode!r}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no pairs to sweep")
    for p in pairs:
        if p.clean.text != p.corrupt.text:
            raise ValueError(f"pair {p.id!r}: clean and corrupt texts differ")
    sites = _as_sites(site)

    if reference == "greedy":
        transcripts = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            transcripts += model.greedy_tokens([p.clean.audio for p in chunk])
    else:
        transcripts = [model.text_tokens(p.text) for p in pairs]

    items = []
    for pair, transcript in zip(pairs, transcripts, strict=True):
        rows = _rows_for(metric, model, pair, transcript)
        clean = RunInput(audio=pair.clean.audio, rows=rows)
        corrupt = RunInput(audio=pair.corrupt.audio, rows=rows)
        source, base = (clean, corrupt) if mode == "denoise" else (corrupt, clean)
        items.append(PatchItem(id=pair.id, source=source, base=base))

    results = run_patching(
        model,
        items,
        sites,
        layers=layers,
        batch_size=batch_size,
        backend=backend,
        progress=progress,
    )
    sweeps = []
    for r in results:
        clean, corrupt = (r.source, r.base) if mode == "denoise" else (r.base, r.source)
        sweeps.append(
            Sweep(
                site=r.site,
                metric=metric,
                mode=mode,
                reference=reference,
                layers=r.layers,
                ids=tuple(p.id for p in pairs),
                clean=np.asarray(clean),
                corrupt=np.asarray(corrupt),
                patched=r.patched,
                floor=floor,
            )
        )
    return sweeps[0] if isinstance(site, (Site, str)) else sweeps
