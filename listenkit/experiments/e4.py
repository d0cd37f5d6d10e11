"""E4: which attention heads are the listen heads? ("top-5 listen heads at L*")

``analyse`` runs the single-head denoising sweeps (encoder self-attention and decoder
cross-attention heads) on a family's pairs, ranks the encoder heads on half A (split by
a hash of the pair id) and tests the top-k set on half B against random sets: patched
together (recovery) and mean-ablated in the clean runs (knockout). Each stage is cached
on its own, the long ones after every batch, so a killed run resumes at its next batch.
The claim statistics (all p-values, judged after Holm across their cells):

- ``set_test`` (C6-sufficient: recovery; C6-necessary: knockout): rank p among R sets;
- ``at_peak`` (C6-at-peak): hypergeometric p of the top-k heads in layer L*;
- ``alignment`` (C6-alignment): hypergeometric p of the overlap of the top-k decoder
  heads with OpenAI's alignment heads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from listenkit.analyses.heads import (
    HeadSweep,
    head_set_knockout,
    head_set_recovery,
    head_sweep,
    random_head_sets,
    top_heads,
)
from listenkit.analyses.listen_layer.patch_sweep import pair_items, sweep_items
from listenkit.analyses.listen_layer.result import Sweep
from listenkit.experiments.cache import AnalysisCache, weights_sha256
from listenkit.experiments.measured import Measured, Requirement
from listenkit.experiments.progress import reporter
from listenkit.models.alignment_heads import alignment_heads
from listenkit.models.speech_model import SpeechModel
from listenkit.report.head_plots import plot_head_claim
from listenkit.stats import hypergeometric_overlap, seeded_generator, split_halves
from listenkit.stimuli.store import StimulusSet

__all__ = ["E4Analysis", "alignment", "analyse", "at_peak", "enough_halves", "set_test"]


@dataclass(frozen=True, kw_only=True)
class E4Analysis:
    """Single-head sweeps on all pairs; discovery on half A, head-set tests on half B."""

    model: str
    family: str
    n_layers: int
    n_heads: int
    n_decoder_layers: int
    manifest_sha256: str
    encoder: HeadSweep
    decoder: HeadSweep
    layer_sweep: Sweep
    in_a: np.ndarray  # boolean mask over the included pairs
    top: list  # top-k encoder heads on half A
    l_star_a: int | None
    recovery: dict | None
    knockout: dict | None
    random_sets: list
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def halves(self) -> dict[str, int]:
        return {"n_a": int(self.in_a.sum()), "n_b": int((~self.in_a).sum())}

    def evidence(self, section: Mapping[str, Any], profile: str) -> dict[str, Any]:
        keys = ("encoder_site", "decoder_site", "layer_site", "split")
        return {
            "definitions": {k: section[k] for k in keys},
            "n_pairs": len(self.encoder.ids),
            "n_used": int(self.encoder.included.sum()),
            **self.halves,
            "half_a_ids": [
                i for i, a in zip(self.encoder.included_ids, self.in_a, strict=True) if a
            ],
            "encoder_effects_all": self.encoder.effects().tolist(),
            "encoder_effects_half_a": self.encoder.effects(self.in_a).tolist()
            if self.halves["n_a"]
            else None,
            "top_heads_half_a": [list(h) for h in self.top],
            "random_sets": [[list(h) for h in s] for s in self.random_sets],
            "profile_random_sets": section["random_sets"][profile],
            "stimulus_manifest_sha256": self.manifest_sha256,
            "timings_s": self.timings,
        }


def analyse(
    model: SpeechModel,
    pairs: StimulusSet,
    section: Mapping[str, Any],
    *,
    family: str,
    profile: str,
    salt: str,
    cache: AnalysisCache | None = None,
) -> E4Analysis:
    """Head sweeps, discovery on half A (split by ``salt``) and the head-set tests on
    half B; each stage cached on its own (``cache``), the long ones per batch."""
    label = f"E4 {model.name} {family}"
    parts = {"weights": weights_sha256(model.module), "stimuli": pairs.manifest_sha256}

    def stage(name, compute, *, batches=False):
        if cache is None:
            return compute({}) if batches else compute()
        return cache.get(f"E4-{name}", model.name, family, profile, parts, compute, batches=batches)

    def compute() -> E4Analysis:
        start = time.perf_counter()
        floor = section["exclusion_floor_nats"]
        items = pair_items(model, list(pairs), section["metric"], reference=section["reference"])

        def heads(stack):
            return lambda done: head_sweep(
                model,
                items=items,
                stack=stack,
                floor=floor,
                done=done,
                progress=reporter(f"{label} {stack} heads", "pairs", resumed=done),
            )

        encoder = stage("encoder-heads", heads("encoder"), batches=True)
        decoder = stage("decoder-heads", heads("decoder"), batches=True)
        layer_sweep = stage(
            "layer-sweep",
            lambda: sweep_items(
                model,
                items,
                [section["layer_site"]],
                section["metric"],
                reference=section["reference"],
                floor=floor,
                progress=False,
            )[0],
        )
        sweeps_s = time.perf_counter() - start
        in_a = split_halves(encoder.included_ids, salt=salt)
        common = dict(
            model=model.name,
            family=family,
            n_layers=model.encoder_layers,
            n_heads=model.heads,
            n_decoder_layers=model.decoder_layers,
            manifest_sha256=pairs.manifest_sha256,
            encoder=encoder,
            decoder=decoder,
            layer_sweep=layer_sweep,
            in_a=in_a,
        )
        if min(int(in_a.sum()), int((~in_a).sum())) < section["minimums"]["half"]:
            return E4Analysis(
                **common,
                top=[],
                l_star_a=None,
                recovery=None,
                knockout=None,
                random_sets=[],
                timings={"sweeps_s": round(sweeps_s, 1)},
            )
        top = top_heads(encoder.effects(in_a), section["top_k"])
        l_star_a = int(layer_sweep.layers[int(np.argmax(layer_sweep.ratio(in_a).value()))])
        rng = seeded_generator(section["seed"], "E4", model.name, family, "random-sets")
        random_sets = random_head_sets(
            model.encoder_layers,
            model.heads,
            section["top_k"],
            section["random_sets"][profile],
            rng,
        )
        included = [it for it, keep in zip(items, encoder.included, strict=True) if keep]
        items_b = [it for it, a in zip(included, in_a, strict=True) if not a]
        start = time.perf_counter()
        chosen = tuple(sorted(top))
        n_sets = 1 + len(random_sets)
        tie = section["rank_tie_rtol"]
        tests = {}
        for name, run, verb in (
            ("patched-sets", head_set_recovery, "patched"),
            ("ablated-sets", head_set_knockout, "ablated"),
        ):

            def compute_sets(done, run=run, verb=verb):
                progress = reporter(
                    f"{label} {n_sets} head sets {verb} on half B", "pairs", resumed=done
                )
                return run(
                    model, items_b, chosen, random_sets, tie_rtol=tie, done=done, progress=progress
                )

            tests[name] = stage(name, compute_sets, batches=True)
        recovery, knockout = tests["patched-sets"], tests["ablated-sets"]
        return E4Analysis(
            **common,
            top=top,
            l_star_a=l_star_a,
            recovery=recovery,
            knockout=knockout,
            random_sets=random_sets,
            timings={
                "sweeps_s": round(sweeps_s, 1),
                "head_sets_s": round(time.perf_counter() - start, 1),
            },
        )

    return stage("all", compute)


# -- claim statistics ------------------------------------------------------------------


def enough_halves(e4: E4Analysis, needed: int, details: Mapping[str, Any]) -> Requirement:
    """The pre-registered minimum of pairs past the floor in each half."""
    return Requirement(
        ok=min(e4.halves.values()) >= needed,
        reason=f"halves of {e4.halves} pairs; the pre-registered minimum is {needed}",
        numbers=dict(e4.halves),
        details=dict(details),
    )


def _draw(claim: str, evidence: Mapping[str, Any]):
    def draw(path, heading):
        plot_head_claim(path, claim, heading.split(" ", 1)[1], evidence)

    return draw


def set_test(e4: E4Analysis, claim: str, which: str, details: Mapping[str, Any]) -> Measured:
    """C6-sufficient (``which="recovery"``) or C6-necessary (``"knockout"``): the rank p
    of the top-k set on half B among the random sets."""
    result = getattr(e4, which)
    evidence = dict(details) | {which: result}
    return Measured(
        observed=result["p_value"],
        numbers={
            "top_heads": [list(h) for h in e4.top],
            "chosen_value": round(result["observed"], 4),
            "R": result["R"],
            **e4.halves,
        },
        details=evidence,
        why_not=lambda t: (
            f"rank p = {result['p_value']:.3f} (top-5 {result['observed']:.3f} vs "
            f"random-set median {np.median(result['null']):.3f}, R = {result['R']})"
        ),
        draw=_draw(claim, evidence),
    )


def at_peak(e4: E4Analysis, claim: str, k: int, details: Mapping[str, Any]) -> Measured:
    """C6-at-peak: ``P(X >= #top-k heads in layer L*)``, X hypergeometric (N x H heads,
    H of them at L*, k drawn); L* = argmax E(l) of the layer site on half A."""
    n_at_peak = sum(1 for layer, _ in e4.top if layer == e4.l_star_a)
    p = hypergeometric_overlap(n_at_peak, e4.n_layers * e4.n_heads, e4.n_heads, k)
    evidence = dict(details) | {
        "L_star_half_a": e4.l_star_a,
        "top_at_L_star": n_at_peak,
        "p_value": p,
    }
    return Measured(
        observed=p,
        numbers={
            "L_star_half_a": e4.l_star_a,
            "top_at_L_star": n_at_peak,
            "top_heads": [list(h) for h in e4.top],
            **e4.halves,
        },
        details=evidence,
        why_not=lambda t: (
            f"{n_at_peak} of the top-{k} heads lie at L* = {e4.l_star_a}; "
            f"hypergeometric p = {p:.3f}"
        ),
        draw=_draw(claim, evidence),
    )


def alignment(e4: E4Analysis, claim: str, details: Mapping[str, Any]) -> Measured:
    """C6-alignment: the top-k decoder cross-attention heads on half A (k = the number of
    OpenAI's alignment heads for the checkpoint) against those heads: hypergeometric p."""
    n_heads = e4.decoder.patched.shape[2]
    reference = alignment_heads(e4.model, e4.n_decoder_layers, n_heads)
    k = len(reference)
    effects = e4.decoder.effects(e4.in_a)
    top = top_heads(effects, k)
    overlap = sorted(set(top) & set(reference))
    p = hypergeometric_overlap(len(overlap), e4.n_decoder_layers * n_heads, k, k)
    evidence = dict(details) | {
        "decoder_effects_half_a": effects.tolist(),
        "alignment_heads": reference,
        "top_decoder_heads_half_a": top,
        "overlap": overlap,
        "p_value": p,
    }
    return Measured(
        observed=p,
        numbers={
            "k": k,
            "overlap": len(overlap),
            "overlap_heads": [list(h) for h in overlap],
            **e4.halves,
        },
        details=evidence,
        why_not=lambda t: (
            f"{len(overlap)} of the top-{k} decoder cross-attention heads are "
            f"alignment heads; hypergeometric p = {p:.3f}"
        ),
        draw=_draw(claim, evidence),
    )
