"""``sweep``: the researcher's entry point for minimal-pair patching sweeps."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence

import numpy as np

from listenkit.analyses.listen_layer.result import Sweep
from listenkit.engine.batch import PatchItem, RunInput, ScoringRow
from listenkit.engine.metrics import logit_diff_rows, ref_logprob_rows
from listenkit.engine.patching import Progress, run_patching
from listenkit.engine.sites import COMPONENTS, Site
from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.types import Pair

__all__ = ["MAX_LENGTH_MISMATCH", "METRICS", "pair_items", "sweep", "sweep_items"]

METRICS = ("ref_logprob", "logit_diff")
MAX_LENGTH_MISMATCH = 0.01  # relative; longer mismatches need allow_unaligned=True
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


def pair_items(
    model: SpeechModel,
    pairs: Sequence[Pair],
    metric: str = "ref_logprob",
    *,
    reference: str = "greedy",
    mode: str = "denoise",
    batch_size: int = 8,
    allow_unaligned: bool = False,
) -> list[PatchItem]:
    """The engine's items for minimal pairs: (source, base) = (clean, corrupt) when
    denoising, (corrupt, clean) when noising; both runs score the same rows.

    Pairs whose clean and corrupt lengths differ by more than ``MAX_LENGTH_MISMATCH``
    are refused unless ``allow_unaligned``: encoder sites are patched frame by frame,
    so an unaligned pair splices frames of other speech into the run."""
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
        a, b = p.clean.audio.size, p.corrupt.audio.size
        if not allow_unaligned and abs(a - b) > MAX_LENGTH_MISMATCH * max(a, b):
            raise ValueError(
                f"pair {p.id!r}: clean and corrupt audio differ in length ({a} vs {b} samples, "
                f"{abs(a - b) / max(a, b):.1%} > {MAX_LENGTH_MISMATCH:.0%}); patching frame by "
                "frame would splice frames of different speech. Use time-aligned pairs (e.g. "
                "praat_voice_pairs) or pass allow_unaligned=True for an exploratory analysis."
            )
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
    return items


def sweep(
    model: SpeechModel,
    pairs: Sequence[Pair],
    site: Site | str,
    metric: str = "ref_logprob",
    *,
    reference: str = "greedy",
    mode: str = "denoise",
    layers: Sequence[int] | None = None,
    floor: float = 1.0,
    batch_size: int = 8,
    backend: str = "hooks",
    progress: Progress = True,
    allow_unaligned: bool = False,
    done: MutableMapping | None = None,
) -> Sweep:
    """Patch ``site`` at every layer (or ``layers``) for each minimal pair.

    ``metric="ref_logprob"`` scores a reference transcript: the clean audio's own
    greedy transcript (``reference="greedy"``, the default everywhere: the metric
    measures recovery of the clean behaviour) or the pair's text (``"text"``).
    ``mode="denoise"`` restores clean activations into the corrupt run; ``"noise"``
    puts corrupt activations into the clean run. Pairs with
    ``m_clean - m_corrupt < floor`` (nats; a signed floor) are excluded and counted.
    Several sites sharing the clean and corrupt runs: ``sweep_items``.
    Pairs whose lengths differ by more than 1% are refused unless ``allow_unaligned``.
    ``progress``: a tqdm bar (True), nothing (False) or a callable ``(pairs done, total)``.
    ``done``: finished batches, a checkpoint to resume from (as in ``sweep_items``).
    """
    items = pair_items(
        model,
        list(pairs),
        metric,
        reference=reference,
        mode=mode,
        batch_size=batch_size,
        allow_unaligned=allow_unaligned,
    )
    [result] = sweep_items(
        model, items, [site], metric, reference=reference, mode=mode, layers=layers,
        floor=floor, batch_size=batch_size, backend=backend, progress=progress, done=done,
    )  # fmt: skip
    return result


def sweep_items(
    model: SpeechModel,
    items: Sequence[PatchItem],
    sites: Sequence[Site | str],
    metric: str,
    *,
    reference: str,
    mode: str = "denoise",
    layers: Sequence[int] | None = None,
    floor: float = 1.0,
    batch_size: int = 8,
    backend: str = "hooks",
    progress: Progress = True,
    done: MutableMapping | None = None,
) -> list[Sweep]:
    """``sweep`` of each of ``sites`` (one clean and one corrupt run shared by all) on
    items already built by ``pair_items`` (so their transcripts are not decoded again);
    ``metric``, ``reference`` and ``mode`` must be the ones they were built with (they
    are recorded in the results). ``done``: finished batches, as in ``run_patching`` (a
    checkpoint to resume from)."""
    sites = _as_sites(sites)
    results = run_patching(
        model,
        items,
        sites,
        layers=layers,
        batch_size=batch_size,
        backend=backend,
        progress=progress,
        done=done,
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
                ids=tuple(it.id for it in items),
                clean=np.asarray(clean),
                corrupt=np.asarray(corrupt),
                patched=r.patched,
                floor=floor,
            )
        )
    return sweeps
