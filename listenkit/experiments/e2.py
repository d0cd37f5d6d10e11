"""E2 / E5: how much of the decision flows through the audio stream, layer by layer?

``analyse`` runs the two-stream interchange interventions (Geiger et al.) on a family's
audio-text conflicts (``listenkit.analyses.grounding``): ``dA(l)`` is the share of the
audio's effect on the margin ``m = log p(a) - log p(b)`` carried by the audio stream at
layer ``l`` (the keys and values block ``l``'s cross-attention reads), ``dT(l)`` the
share of the text channel's effect carried by the text stream (block ``l``'s
self-attention keys and values at the prompt positions), both ratios of means over the
conflicts past the signed floors. Pre-registration v3 (``listenkit.stats.grounding_profile``):
the listen layer ``l* = argmax dA``; ``gc = dA / (dA + dT)`` only where both streams
demonstrably carry the decision; every bootstrap resamples clusters (sentence pairs).
The claim statistics:

- ``listen_layer_in_region`` (C3), ``gc_sharpness`` (C3-sharp, cross-fitted);
- ``suppression`` (C5a: dA at ``l*`` in failures vs successes within flip types);
- ``drop_then_recover`` (C5b);
- ``null_check`` and ``dominance`` (reported).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from listenkit.analyses.grounding.whisper import (
    AUDIO_STREAM,
    TEXT_STREAM,
    GroundingSweep,
    conflict_items,
    grounding_sweep,
)
from listenkit.engine.patching import null_patch_deviation
from listenkit.experiments.cache import AnalysisCache, weights_sha256
from listenkit.experiments.e1 import relative_region
from listenkit.experiments.measured import Measured, Requirement, enough_in_halves
from listenkit.experiments.progress import reporter
from listenkit.models.speech_model import SpeechModel
from listenkit.report.plots import plot_grounding
from listenkit.stats import drop_and_recover
from listenkit.stats.grounding_profile import (
    argmax_share,
    cluster_index,
    listen_profile,
    shared_text_clusters,
    split_by_cluster,
)
from listenkit.stats.sharpness import peak_comparisons
from listenkit.stats.stratified_permutation import stratified_permutation_test
from listenkit.stimuli.families import conflict_family

__all__ = [
    "E2Analysis",
    "analyse",
    "analyse_audio_lm",
    "dominance",
    "drop_then_recover",
    "enough_conflicts",
    "gc_sharpness",
    "listen_layer_in_region",
    "null_check",
    "profile",
    "suppression",
]

READ_NOTE = (
    "streams = the keys and values block l's attention reads at that stream's positions; "
    "nothing is forced at any layer (the last included)"
)


@dataclass(frozen=True, kw_only=True)
class E2Analysis:
    """The grounding sweep of one (model, conflict family) and its null check."""

    model: str
    family: str
    n_layers: int  # N: decoder layers (Whisper) or LLM layers (audio LMs)
    sweep: GroundingSweep
    manifest_sha256: str
    dropped: dict[str, Any]  # per flip type: stimuli dropped because the texts do not line up
    clusters: tuple[str, ...] = ()  # per stimulus of the sweep: stimuli sharing a sentence
    null_deviation: dict[str, float] | None = None  # Whisper only (None: not run)
    timings: dict[str, float] = field(default_factory=dict)

    def tdr(self) -> dict[str, tuple[float, int]]:
        """ALME's Text Dominance Ratio, share of ``m(x) < 0``, per flip type and "all"."""
        groups: dict[str, list[float]] = defaultdict(list)
        for m, flip in zip(self.sweep.m_x, self.sweep.flip_types, strict=True):
            groups[flip].append(m)
            groups["all"].append(m)
        return {k: (float(np.mean(np.asarray(v) < 0)), len(v)) for k, v in sorted(groups.items())}

    def evidence(self, section: Mapping[str, Any], curves=None) -> dict[str, Any]:
        s = self.sweep
        return {
            "definitions": {
                k: section[k]
                for k in ("metric", "interventions", "dA", "dT", "listen_layer", "gc", "clusters")
            },
            "audio_stream": s.audio_site.to_dict(),
            "text_stream": s.text_site.to_dict(),
            "structural_note": READ_NOTE,
            "n_layers": self.n_layers,
            "curves": None if curves is None else curves.to_records(),
            "per_stimulus_dA": _per_stimulus(s.da(), s),
            "per_stimulus_dT": _per_stimulus(s.dt(), s),
            "gc_min_sum": section["gc_min_sum"],
            "exclusion_floor_nats": s.floor,
            "n_stimuli": len(s.ids),
            "n_used": int(s.included.sum()),
            "n_failures_used": int((s.failures & s.included).sum()),
            "exclusions_per_flip_type": s.exclusions(),
            "dropped_not_lined_up_per_flip_type": self.dropped,
            "text_dominance_ratio": {k: {"tdr": v, "n": n} for k, (v, n) in self.tdr().items()},
            "median_margin_m_x": float(np.median(s.m_x)),
            "stimulus_manifest_sha256": self.manifest_sha256,
            "timings_s": self.timings,
        }


def _per_stimulus(values: np.ndarray, sweep: GroundingSweep) -> dict[str, list[float]]:
    ids = [i for i, keep in zip(sweep.ids, sweep.included, strict=True) if keep]
    return {i: [float(x) for x in row] for i, row in zip(ids, values, strict=True)}


def analyse(
    model: SpeechModel,
    spec: Mapping[str, Any],
    section: Mapping[str, Any],
    *,
    family: str,
    profile: str,
    null_check_stimuli: int,
    cache: AnalysisCache | None = None,
) -> E2Analysis:
    """The family's conflicts (``spec``, lined up under the model's tokenizer), the gc
    sweep on Whisper's decoder and the null check of both streams on the first
    ``null_check_stimuli`` conflicts; cached."""
    clean, stimuli = _conflicts(spec, section, profile, model.text_tokens, model.name)

    def null(checked: Sequence[Any]) -> dict[str, float]:
        audio_items, text_items = conflict_items(model, checked)
        return null_patch_deviation(model, audio_items, [AUDIO_STREAM]) | null_patch_deviation(
            model, text_items, [TEXT_STREAM]
        )

    def sweep(s, floor, progress) -> GroundingSweep:
        return grounding_sweep(model, s, floor=floor, progress=progress)

    return _analysed(
        sweep,
        stimuli,
        clean,
        section,
        model.name,
        family,
        profile,
        model.decoder_layers,
        run_null=null,
        null_check_stimuli=null_check_stimuli,
        cache=cache,
        weights=weights_sha256(model.module),
    )


def analyse_audio_lm(
    lm: Any,
    spec: Mapping[str, Any],
    section: Mapping[str, Any],
    *,
    name: str,
    family: str,
    profile: str,
    remote: bool = False,
) -> E2Analysis:
    """The same on an audio language model (``listenkit.models.qwen2_audio.AudioLM``);
    ``remote`` runs the traces on NDIF through nnsight. Not cached (no weights
    fingerprint of a 7B checkpoint)."""
    from listenkit.analyses.grounding.audio_lm import lm_grounding_sweep

    clean, stimuli = _conflicts(spec, section, profile, lm.text_tokens, lm.name)

    def sweep(s, floor, progress) -> GroundingSweep:
        backend = "nnsight" if remote else "hooks"
        return lm_grounding_sweep(
            lm, s, floor=floor, progress=False, backend=backend, remote=remote
        )

    return _analysed(sweep, stimuli, clean, section, name, family, profile, lm.n_layers)


def _conflicts(spec, section, profile, encode, tokenizer_name):
    return conflict_family(
        spec,
        section["per_flip_type"][profile],
        encode=encode,
        tokenizer_name=tokenizer_name,
        seed=section["seed"],
    )


def _analysed(
    run_sweep: Callable[..., GroundingSweep],
    stimuli: Sequence[Any],
    clean: Any,
    section: Mapping[str, Any],
    model: str,
    family: str,
    profile: str,
    n_layers: int,
    *,
    run_null: Callable[[Sequence[Any]], dict[str, float]] | None = None,
    null_check_stimuli: int = 0,
    cache: AnalysisCache | None = None,
    weights: str | None = None,
) -> E2Analysis:
    start = time.perf_counter()

    def compute() -> E2Analysis:
        sweep = run_sweep(
            stimuli,
            section["exclusion_floor_nats"],
            reporter(f"E2 {model} {family} gc sweep", "conflicts"),
        )
        null = run_null(stimuli[:null_check_stimuli]) if run_null is not None else None
        by_id = {st.stimulus_id: st for st in stimuli}
        texts = [(by_id[i].ref_text, by_id[i].conflict_text) for i in sweep.ids]
        return E2Analysis(
            clusters=tuple(shared_text_clusters(texts)),
            model=model,
            family=family,
            n_layers=n_layers,
            sweep=sweep,
            manifest_sha256=clean.manifest_sha256,
            dropped=dict(clean.header.get("dropped", {})),
            null_deviation=null,
            timings={"sweep_s": round(time.perf_counter() - start, 1)},
        )

    if cache is None or weights is None:
        return compute()
    parts = {"weights": weights, "stimuli": clean.manifest_sha256}
    return cache.get("E2", model, family, profile, parts, compute)


# -- claim statistics (pre-registration v3) -------------------------------------------


def enough_conflicts(e2: E2Analysis, section: Mapping[str, Any], needed: int) -> Requirement:
    """The pre-registered minimum of conflicts past both signed floors."""
    s = e2.sweep
    n_used = int(s.included.sum())
    return Requirement(
        ok=n_used >= needed,
        reason=f"{n_used} of {len(s.ids)} conflicts pass both signed floors ({s.floor} nats; "
        f"exclusions {s.exclusions()}); the pre-registered minimum is {needed}",
        numbers={"n_used": n_used},
        details=e2.evidence(section),
    )


def profile(e2: E2Analysis, section: Mapping[str, Any], rng: Any, n: int, rows=None):
    """dA, dT and the defined gc per layer, cluster bootstrap (``rows``: a subset of the
    used conflicts, a boolean mask or indices)."""
    s = e2.sweep
    keep = np.flatnonzero(s.included)
    clusters = np.asarray(e2.clusters)[keep]
    if rows is not None:
        picked = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        clusters = clusters[picked]
    return listen_profile(
        s.da_ratio(rows),
        s.dt_ratio(rows),
        s.layers,
        clusters=cluster_index(list(clusters)),
        rng=rng,
        n_resamples=n,
        min_sum=section["gc_min_sum"],
    )


def _caveats(curves) -> list[str]:
    """Automatic caveats for the ledger: the edges, undefined gc, monotone dA."""
    out = []
    if curves.l_star in (curves.layers[0], curves.layers[-1]):
        out.append(f"the listen layer l* = {curves.l_star} is an edge layer")
    if np.all(np.diff(curves.da) > 0) or np.all(np.diff(curves.da) < 0):
        out.append("dA is monotone over the layers")
    undefined = [la for la, ok in zip(curves.layers, curves.defined, strict=True) if not ok]
    if undefined:
        out.append(f"gc undefined at layers {undefined}")
    return out


def _draw(curves, title, **options):
    def draw(path, heading):
        plot_grounding(path, curves, title=f"{heading}: {title}", note="", **options)

    return draw


def _untied(curves, evidence, numbers, what: str) -> Requirement:
    return Requirement(
        ok=len(curves.tied) == 1,
        reason=f"an exact tie for the maximum of dA {what} at layers {curves.tied}",
        numbers=numbers,
        details=evidence,
    )


def listen_layer_in_region(
    e2: E2Analysis, section: Mapping[str, Any], bounds: Sequence[float], rng: Any, n: int
) -> tuple[Requirement, Measured]:
    """C3: ``P_boot(l* / N in bounds)``, ``l* = argmax dA`` (a tie within a resample
    shares its credit; an exact tie in the observed curve: inconclusive)."""
    region = [layer for layer in relative_region(bounds, e2.n_layers) if layer in e2.sweep.layers]
    curves = profile(e2, section, rng("curves"), n)
    p = curves.share_at(region)
    caveats = _caveats(curves)
    numbers = {"l_star": curves.l_star, "region": region, "n_used": curves.n,
               "n_clusters": curves.n_clusters, "caveats": caveats}  # fmt: skip
    evidence = e2.evidence(section) | {
        "curves": curves.to_records(),
        "l_star": curves.l_star,
        "l_star_tied": curves.tied,
        "region_layers": region,
        "l_star_share": {str(la): float(v) for la, v in
                         zip(curves.layers, argmax_share(curves.da_samples), strict=True)},
        "p_region": p,
        "caveats": caveats,
    }  # fmt: skip
    label = f"l*/N in [{bounds[0]:g}, {bounds[1]:g}]"
    measured = Measured(
        observed=p,
        numbers=numbers,
        details=evidence,
        why_not=lambda t: (
            f"P_boot({label}) = {p:.3f} < {t} (l* = argmax dA = {curves.l_star} of "
            f"{e2.n_layers}, region {region}, n = {curves.n})"
        ),
        draw=_draw(curves, f"P({label}) = {p:.3f}", region=region,
                   l_star_samples=curves.l_star_samples),
    )  # fmt: skip
    return _untied(curves, evidence, numbers, "over all conflicts"), measured


def gc_sharpness(
    e2: E2Analysis, section: Mapping[str, Any], *, salt: str, minimum_half: int, rng: Any, n: int
) -> tuple[Requirement, Measured | None]:
    """C3-sharp: ``l* = argmax dA`` on half A (halves by cluster); on half B, for every
    other layer where gc is defined, the simultaneous 97.5% lower bound of ``gc_B(l*) -
    gc_B(l)`` (cluster bootstrap), each comparison decided on its own. A layer whose gc
    is undefined (or in more than ``gc_max_undefined_share`` of the resamples) is
    excluded and listed, a caveat; those where dA's lower bound is > 0 are named."""
    s = e2.sweep
    ids = [i for i, keep in zip(s.ids, s.included, strict=True) if keep]
    in_a = split_by_cluster([e2.clusters[i] for i in np.flatnonzero(s.included)], salt=salt)
    evidence = e2.evidence(section) | {
        "split": {"salt": salt, "half_a_ids": [i for i, a in zip(ids, in_a, strict=True) if a]}
    }
    halves, enough = enough_in_halves(in_a, minimum_half, "conflicts", {"n_used": len(ids)},
                                      evidence)  # fmt: skip
    if not enough.ok:
        return enough, None
    curves_a = profile(e2, section, rng("curves-a"), n, rows=in_a)
    curves_b = profile(e2, section, rng("curves-b"), n, rows=~in_a)
    evidence |= {"curves_half_a": curves_a.to_records(), "curves_half_b": curves_b.to_records()}
    numbers = {"l_star_half_a": curves_a.l_star, **halves}
    tie = _untied(curves_a, evidence, numbers, "on half A")
    if not tie.ok:
        return tie, None
    peak = curves_b.layers.index(curves_a.l_star)
    samples = iter([curves_b.gc_samples])
    result = peak_comparisons(
        peak, curves_b.gc, lambda block: block, samples, curves_b.layers,
        threshold=0.0, max_undefined_share=section["gc_max_undefined_share"],
        confidence=section["sharp_confidence"],
    )  # fmt: skip
    # caveat: uncompared layers (gc undefined, or in > 5% of resamples) where the audio
    # stream demonstrably carries the decision (dA's lower bound > 0)
    compared = {c["layer"] for c in result.get("comparisons", [])}
    audio_read_uncompared = [
        la for j, la in enumerate(curves_b.layers)
        if la != curves_a.l_star and la not in compared and curves_b.da_low[j] > 0
    ]  # fmt: skip
    details = evidence | {"sharpness": result, "audio_read_uncompared": audio_read_uncompared}
    numbers |= {
        "failing_layers": result.get("failing_layers"),
        "excluded_layers": [x["layer"] for x in result.get("excluded_layers", [])],
        "undefined_layers": result.get("undefined_layers"),
        "audio_read_uncompared": audio_read_uncompared,
    }
    if result["sharp"] is None:
        return Requirement(ok=False, reason=result["reason"], numbers=numbers,
                           details=details), None  # fmt: skip
    observed = result["min_lower_bound"]
    failed = [c for c in result["comparisons"] if not c["passes"]]
    bounds = ", ".join(f"L{c['layer']}: {c['lower_bound']:.3f}" for c in failed)
    title = f"l* = {curves_a.l_star} (half A), min lower bound on B = {observed:.3f}"
    return Requirement(ok=True), Measured(
        observed=observed,
        numbers=numbers,
        details=details,
        why_not=lambda t: (
            f"l* = {curves_a.l_star} chosen on half A (n = {halves['n_a']}); on half B "
            f"(n = {halves['n_b']}) gc(l*) is not above gc at layers "
            f"{result['failing_layers']} (simultaneous 97.5% lower bounds {bounds})"
        ),
        draw=_draw(curves_b, title, region=[curves_a.l_star]),
    )


def suppression(
    e2: E2Analysis,
    section: Mapping[str, Any],
    minimums: Mapping[str, int],
    rng: Any,
    n: int,
    n_permutations: int,
) -> tuple[Requirement, Measured | None]:
    """C5a: is dA at ``l*`` (argmax dA over all conflicts) lower in failures (``m(x) <
    0``) than in successes within flip types? Stratified difference of ratios of means,
    one-sided permutation p within flip types, clusters kept whole."""
    s = e2.sweep
    failures = s.failures[s.included]
    counts = {"n_failures": int(failures.sum()), "n_successes": int((~failures).sum())}
    curves = profile(e2, section, rng("curves"), n)
    evidence = e2.evidence(section) | {"curves": curves.to_records(), "l_star": curves.l_star}
    evidence |= counts
    numbers = {"l_star": curves.l_star, "n_used": curves.n, **counts}
    short = [
        f"{counts[key]} {what} (minimum {minimums[minimum]})"
        for key, what, minimum in (
            ("n_failures", "failures", "c5a_failures"),
            ("n_successes", "successes", "c5a_successes"),
        )
        if counts[key] < minimums[minimum]
    ]
    if short:
        return Requirement(ok=False, reason="; ".join(short), numbers=numbers,
                           details=evidence), None  # fmt: skip
    tie = _untied(curves, evidence, numbers, "over all conflicts")
    if not tie.ok:
        return tie, None
    ratio = s.da_ratio()
    column = s.layers.index(curves.l_star)
    keep = np.flatnonzero(s.included)
    strata = [s.flip_types[i] for i in keep]
    units = [e2.clusters[i] for i in keep]
    test = stratified_permutation_test(
        ratio.num[:, column], ratio.den, failures, strata, units,
        rng=rng("permutation"), n_permutations=n_permutations,
    )  # fmt: skip
    details = evidence | {"test": test}
    if test["p_value"] is None:
        return Requirement(ok=False, reason=test["reason"], numbers=numbers,
                           details=details), None  # fmt: skip
    numbers |= {"stratified_difference": round(test["statistic"], 4)}
    title = f"raw p = {test['p_value']:.3f} ({counts['n_failures']} failures)"
    return Requirement(ok=True), Measured(
        observed=test["p_value"],
        numbers=numbers,
        details=details,
        why_not=lambda t: (
            f"permutation p = {test['p_value']:.3f} (dA at l* = {curves.l_star}, successes - "
            f"failures within flip types = {test['statistic']:.3f}; "
            f"{counts['n_failures']} failures of {curves.n})"
        ),
        draw=_draw(curves, title, region=[curves.l_star]),
    )


def drop_then_recover(
    e2: E2Analysis,
    section: Mapping[str, Any],
    drop: float,
    minimum_failures: int,
    rng: Any,
    n: int,
) -> tuple[Requirement, Measured | None]:
    """C5b: ``P_boot(exists l1 < l2 < l3: gc(l2) <= gc(l1) - drop, gc(l3) >= gc(l2) +
    drop)`` on the failures, gc defined by the v3 rule on the failures (cluster
    bootstrap; undefined layers are skipped)."""
    s = e2.sweep
    failures = s.failures[s.included]
    n_failures = int(failures.sum())
    if n_failures < minimum_failures:
        reason = f"{n_failures} failures; the pre-registered minimum is {minimum_failures}"
        return Requirement(
            ok=False,
            reason=reason,
            numbers={"n_used": int(s.included.sum()), "n_failures": n_failures},
            details=e2.evidence(section) | {"n_failures": n_failures},
        ), None
    curves = profile(e2, section, rng("failure-curves"), n, rows=np.flatnonzero(failures))
    p = float(drop_and_recover(curves.gc_samples, drop=drop).mean())
    pattern = bool(drop_and_recover(curves.gc, drop=drop)[0])
    return Requirement(ok=True), Measured(
        observed=p,
        numbers={"n_failures": n_failures, "defined_layers": [
            la for la, ok in zip(curves.layers, curves.defined, strict=True) if ok]},
        details=e2.evidence(section)
        | {
            "p_drop_and_recover": p,
            "pattern_in_point_estimate": pattern,
            "failure_curves": curves.to_records(),
        },
        why_not=lambda t: f"P_boot(drop then recover) = {p:.3f} < {t} on {n_failures} failures",
        draw=_draw(curves, f"failures (n = {n_failures}), P(drop+recover) = {p:.3f}"),
    )  # fmt: skip


def null_check(e2: E2Analysis, tolerance: float, null_check_stimuli: int) -> Measured:
    """Reported (an error when it fails): both streams patched from x into itself."""
    worst = max(e2.null_deviation.values())
    if worst > tolerance:
        raise RuntimeError(
            f"machinery broken: patching x into itself moved the margin by {worst:.2e} nats "
            f"({e2.null_deviation})"
        )
    return Measured(
        observed=None,
        numbers={"threshold": tolerance, "observed": float(f"{worst:.3g}")},
        details={
            "null_check_max_abs_nats": e2.null_deviation,
            "null_check_stimuli": null_check_stimuli,
        },
    )


def dominance(e2: E2Analysis) -> Measured:
    """Reported: the Text Dominance Ratio per flip type, with the drops and exclusions."""
    s, tdr = e2.sweep, e2.tdr()
    return Measured(
        observed=None,
        numbers={
            "tdr": {k: round(v, 3) for k, (v, _) in tdr.items()},
            "n": {k: n for k, (_, n) in tdr.items()},
            "n_used_for_gc": int(s.included.sum()),
        },
        details={
            "text_dominance_ratio": {k: {"tdr": v, "n": n} for k, (v, n) in tdr.items()},
            "margins_m_x": dict(zip(s.ids, s.m_x.tolist(), strict=True)),
            "exclusions_per_flip_type": s.exclusions(),
            "dropped_not_lined_up_per_flip_type": e2.dropped,
            "stimulus_manifest_sha256": e2.manifest_sha256,
        },
    )
