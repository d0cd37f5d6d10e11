"""E4: which attention heads are the listen heads? ("top-5 listen heads at L*")

Pre-registration v3. The pairs past the signed floor are split by a hash of their id.
On half A (discovery): every encoder head is scored by attribution patching (the
screen), the ``verify_top`` best and ``verify_random`` others are patched exactly, and
the top-k is the k largest *exact* effects among the verified ones; the decoder's
cross-attention heads are patched exactly; knockout's head means are half A's clean
runs. On half B (every test): the top-k set against random sets with the same layer
histogram, patched together (recovery) and mean-ablated (knockout), with a sequential
rank p, a bootstrap margin over the 95th percentile of the random sets, and completeness
(the set's value over all heads' value); and L* (C6-at-peak), the argmax of the layer
site's E(l) on half B.

Claim statistics (p-values, judged after Holm over the claim's grid):

- ``set_test`` (C6-sufficient: recovery; C6-necessary: knockout);
- ``at_peak`` (C6-at-peak): hypergeometric p of the top-k heads in layer L*;
- ``alignment`` (C6-alignment): layer-stratified hypergeometric p of the top-k decoder
  heads' overlap with OpenAI's alignment heads.

Each stage is cached on its own (the long ones after every batch), so a killed run
resumes at its next batch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from listenkit.analyses.attribution import HeadScores, Verification, head_scores, verify
from listenkit.analyses.head_set_tests import (
    HeadSetTest,
    layer_histogram,
    layer_matched_null,
    margin_bound,
    n_layer_matched_sets,
    sequential_head_set_test,
)
from listenkit.analyses.heads import HeadSweep, head_sweep, top_heads
from listenkit.analyses.listen_layer.patch_sweep import pair_items, sweep_items
from listenkit.analyses.listen_layer.result import Sweep
from listenkit.engine.batch import PatchItem
from listenkit.engine.head_sets import head_means, run_head_sets
from listenkit.experiments.cache import AnalysisCache, weights_sha256
from listenkit.experiments.measured import Measured, Requirement
from listenkit.experiments.progress import reporter
from listenkit.models.alignment_heads import alignment_heads
from listenkit.models.speech_model import SpeechModel
from listenkit.report.head_plots import plot_head_claim
from listenkit.stats import (
    hypergeometric_overlap,
    seeded_generator,
    split_halves,
    stratified_hypergeometric_overlap,
)
from listenkit.stimuli.store import StimulusSet

__all__ = [
    "E4Analysis",
    "alignment",
    "analyse",
    "at_peak",
    "enough_halves",
    "set_test",
    "testable",
]


@dataclass(frozen=True, kw_only=True)
class E4Analysis:
    """Discovery on half A, head-set tests on half B (``None`` below the minimum)."""

    model: str
    family: str
    n_layers: int
    n_heads: int
    n_decoder_layers: int
    manifest_sha256: str
    layer_sweep: Sweep  # the layer site on every pair
    in_a: np.ndarray  # boolean mask over the included pairs
    screen: HeadScores | None = None  # half A, every encoder head
    verification: Verification | None = None  # half A, exact
    decoder: HeadSweep | None = None  # half A, exact
    top: list = field(default_factory=list)  # top-k encoder heads (exact, half A)
    top_tied: bool = False  # an exact tie at the k-th place
    stability: float | None = None  # mean Jaccard of the top-k over half-A resamples
    l_star_b: int | None = None  # argmax E(l) of the layer site on half B
    l_star_tied: bool = False
    recovery: HeadSetTest | None = None
    knockout: HeadSetTest | None = None
    margins: dict = field(default_factory=dict)  # statistic -> margin_bound(...)
    n_matched_sets: int = 0  # M, the distinct layer-matched sets
    timings: dict = field(default_factory=dict)

    @property
    def halves(self) -> dict[str, int]:
        return {"n_a": int(self.in_a.sum()), "n_b": int((~self.in_a).sum())}

    def encoder_map(self) -> np.ndarray:
        """Half A's encoder head effects for the plots: the screen's estimates, with the
        verified heads' exact values written in."""
        effects = self.screen.effects().copy()
        for (layer, head), value in zip(
            self.verification.checked, self.verification.exact, strict=True
        ):
            effects[layer - 1, head] = value
        return effects

    def evidence(self, section: Mapping[str, Any], profile: str) -> dict[str, Any]:
        keys = ("encoder_site", "decoder_site", "layer_site", "split", "screen", "random_rule")
        out: dict[str, Any] = {
            "definitions": {k: section[k] for k in keys if k in section},
            "n_pairs": len(self.layer_sweep.ids),
            "n_used": int(self.layer_sweep.included.sum()),
            **self.halves,
            "half_a_ids": [
                i for i, a in zip(self.layer_sweep.included_ids, self.in_a, strict=True) if a
            ],
            "stimulus_manifest_sha256": self.manifest_sha256,
            "profile_random_sets": section["random_sets"][profile],
            "timings_s": self.timings,
        }
        if self.screen is None:
            return out
        check = self.verification
        return out | {
            "encoder_effects_half_a": self.encoder_map().tolist(),
            "encoder_screen_half_a": self.screen.effects().tolist(),
            "verified_heads": [list(h) for h in check.checked],
            "verified_exact": check.exact.tolist(),
            "verified_screen": check.screened.tolist(),
            "screen_recall": {str(k): v for k, v in check.recall.items()},
            "screen_spearman": check.spearman,
            "sample_max_abs": check.sample_max_abs,
            "top_heads_half_a": [list(h) for h in self.top],
            "top_tied": self.top_tied,
            "top_stability_jaccard_among_verified": self.stability,
            "layer_histogram": {str(k): v for k, v in layer_histogram(self.top).items()},
            "n_layer_matched_sets": self.n_matched_sets,
            "random_sets_seed_key": "E4/<model>/<family>/random-sets",
            "random_sets_evaluated": {
                name: [[list(h) for h in s] for s in test.sets[2:]]
                for name, test in (("recovery", self.recovery), ("knockout", self.knockout))
                if test is not None
            },
        }


def _sets_sha(sets) -> str:
    return hashlib.sha256(repr([list(map(list, s)) for s in sets]).encode()).hexdigest()[:16]


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
    """The layer sweep, discovery on half A (split by ``salt``) and the head-set tests
    on half B; each stage cached on its own (``cache``), the long ones per batch."""
    label = f"E4 {model.name} {family}"
    parts = {"weights": weights_sha256(model.module), "stimuli": pairs.manifest_sha256}

    def stage(name, compute, *, batches=False, more=None):
        if cache is None:
            return compute({}) if batches else compute()
        key_parts = parts | (more or {})
        return cache.get(f"E4-{name}", model.name, family, profile, key_parts, compute,
                         batches=batches)  # fmt: skip

    def compute() -> E4Analysis:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        floor, k = section["exclusion_floor_nats"], section["top_k"]
        items = pair_items(model, list(pairs), section["metric"], reference=section["reference"])
        layer_sweep = stage(
            "layer-sweep",
            lambda: sweep_items(
                model, items, [section["layer_site"]], section["metric"],
                reference=section["reference"], floor=floor, progress=False,
            )[0],
        )  # fmt: skip
        in_a = split_halves(layer_sweep.included_ids, salt=salt)
        common = dict(
            model=model.name,
            family=family,
            n_layers=model.encoder_layers,
            n_heads=model.heads,
            n_decoder_layers=model.decoder_layers,
            manifest_sha256=pairs.manifest_sha256,
            layer_sweep=layer_sweep,
            in_a=in_a,
        )
        timings["layer_sweep_s"] = round(time.perf_counter() - start, 1)
        if min(int(in_a.sum()), int((~in_a).sum())) < section["minimums"]["half"]:
            return E4Analysis(**common, timings=timings)
        included = [it for it, keep in zip(items, layer_sweep.included, strict=True) if keep]
        items_a = [it for it, a in zip(included, in_a, strict=True) if a]
        items_b = [it for it, a in zip(included, in_a, strict=True) if not a]

        # -- discovery on half A ------------------------------------------------------
        start = time.perf_counter()
        screen_spec = section["screen"]
        screen = stage(
            "screen",
            lambda: head_scores(
                model, items=items_a, site=section["encoder_site"],
                method=screen_spec["method"], floor=floor,
            ),
        )  # fmt: skip
        check = stage(
            "verify",
            lambda: verify(
                model, items_a, screen.effects(), stack="encoder",
                n_top=screen_spec["verify_top"], n_random=screen_spec["verify_random"],
                rng=seeded_generator(section["seed"], "E4", model.name, family, "verify-sample"),
                floor=-np.inf,  # half A's pairs passed the floor in the layer sweep
                progress=reporter(f"{label} verifying screened heads", "pairs"),
            ),
        )  # fmt: skip
        top = check.top(k)
        ordered = np.sort(check.exact)[::-1]
        top_tied = bool(len(ordered) > k and ordered[k - 1] == ordered[k])
        weights = _resample_weights(section, model.name, family, profile, len(check.gap))
        stability = float(np.mean([_jaccard(top, row) for row in check.resampled_top(k, weights)]))
        decoder = stage(
            "decoder-heads",
            lambda done: head_sweep(
                model, items=items_a, stack="decoder", floor=floor, done=done,
                progress=reporter(f"{label} decoder heads (half A)", "pairs", resumed=done),
            ),
            batches=True,
        )  # fmt: skip
        layer_effects = layer_sweep.ratio(~in_a).value()  # L* on half B: not where top-k came from
        l_star_b = int(layer_sweep.layers[int(np.argmax(layer_effects))])
        l_star_tied = int(np.count_nonzero(layer_effects == layer_effects.max())) > 1
        timings["discovery_s"] = round(time.perf_counter() - start, 1)

        # -- tests on half B ----------------------------------------------------------
        start = time.perf_counter()
        chosen = tuple(sorted(top))
        rng = seeded_generator(section["seed"], "E4", model.name, family, "random-sets")
        random_sets, exhaustive = layer_matched_null(
            chosen, model.heads, section["random_sets"][profile], rng
        )
        every_head = tuple((la, h) for la in range(1, model.encoder_layers + 1)
                           for h in range(model.heads))  # fmt: skip
        means_a: dict = {}

        def means():
            if not means_a:
                means_a.update(head_means(model, [it.source.audio for it in items_a]))
            return means_a

        tests = {}
        for statistic, verb in (("recovery", "patched"), ("knockout", "ablated")):
            test_items = items_b
            if statistic == "knockout":
                test_items = [PatchItem(id=it.id, source=it.source, base=it.source)
                              for it in items_b]  # fmt: skip

            def run_sets(j, sets, statistic=statistic, verb=verb, test_items=test_items):
                def compute_chunk(done):
                    progress = reporter(
                        f"{label} {len(sets)} head sets {verb} on half B (chunk {j + 1})",
                        "pairs",
                        resumed=done,
                    )
                    return run_head_sets(
                        model, test_items, sets,
                        means=means() if statistic == "knockout" else None,
                        done=done, progress=progress,
                    )  # fmt: skip

                return stage(f"{statistic}-chunk{j}", compute_chunk, batches=True,
                             more={"sets": _sets_sha(sets)})  # fmt: skip

            tests[statistic] = sequential_head_set_test(
                model, test_items, chosen, random_sets, statistic=statistic,
                h=section["sequential"]["h"], chunk=section["sequential"]["chunk"],
                extra_sets=[every_head], tie_rtol=section["rank_tie_rtol"],
                exhaustive=exhaustive, run_sets=run_sets,
            )  # fmt: skip
        margins = {
            statistic: margin_bound(
                test,
                seeded_generator(section["seed"], "E4", model.name, family, f"margin-{statistic}"),
                section["resamples"][profile],
                quantile=section["margin"]["quantile"],
                level=section["margin"]["level"],
            )
            for statistic, test in tests.items()
        }
        timings["head_sets_s"] = round(time.perf_counter() - start, 1)
        return E4Analysis(
            **common,
            screen=screen,
            verification=check,
            decoder=decoder,
            top=top,
            top_tied=top_tied,
            stability=stability,
            l_star_b=l_star_b,
            l_star_tied=l_star_tied,
            recovery=tests["recovery"],
            knockout=tests["knockout"],
            margins=margins,
            n_matched_sets=n_layer_matched_sets(chosen, model.heads),
            timings=timings,
        )

    return stage("all", compute)


def _resample_weights(section, model: str, family: str, profile: str, n: int) -> np.ndarray:
    rng = seeded_generator(section["seed"], "E4", model, family, "top-stability")
    return rng.multinomial(n, np.full(n, 1.0 / n), size=section["resamples"][profile])


def _jaccard(a, b) -> float:
    a, b = {tuple(x) for x in a}, {tuple(x) for x in b}
    return len(a & b) / len(a | b)


# -- claim statistics ------------------------------------------------------------------


def enough_halves(e4: E4Analysis, needed: int, details: Mapping[str, Any]) -> Requirement:
    """The pre-registered minimum of pairs past the floor in each half."""
    return Requirement(
        ok=min(e4.halves.values()) >= needed,
        reason=f"halves of {e4.halves} pairs; the pre-registered minimum is {needed}",
        numbers=dict(e4.halves),
        details=dict(details),
    )


def testable(e4: E4Analysis, which: str, alpha: float, details: Mapping[str, Any]) -> Requirement:
    """A set test can decide: the top-k is not tied at its k-th place, and the smallest
    p the layer-matched null allows, ``1 / (1 + R)``, is below ``alpha`` (few distinct
    layer-matched sets, e.g. a top-5 that fills most of one layer, cannot reach it)."""
    test: HeadSetTest = getattr(e4, which)
    numbers = {"R": test.R, "n_layer_matched_sets": e4.n_matched_sets, "top_tied": e4.top_tied}
    if e4.top_tied:
        return Requirement(ok=False, reason="an exact tie at the top-k's k-th place on half A",
                           numbers=numbers, details=dict(details))  # fmt: skip
    return Requirement(
        ok=test.smallest_p < alpha,
        reason=(
            f"the layer-matched null has {e4.n_matched_sets} distinct sets, so the smallest "
            f"possible p is {test.smallest_p:.3f}, not below alpha = {alpha}"
        ),
        numbers=numbers,
        details=dict(details),
    )


def _draw(claim: str, evidence: Mapping[str, Any]):
    def draw(path, heading):
        plot_head_claim(path, claim, heading.split(" ", 1)[1], evidence)

    return draw


def set_test(e4: E4Analysis, claim: str, which: str, details: Mapping[str, Any]) -> Measured:
    """C6-sufficient (``which="recovery"``) or C6-necessary (``"knockout"``): the
    sequential rank p of the top-k set on half B among the layer-matched random sets;
    further condition: the bootstrap lower bound of ``V_top - q95(V_random)`` > 0."""
    test: HeadSetTest = getattr(e4, which)
    margin = e4.margins[which]
    values = test.values()
    completeness = float(values[0] / values[1]) if values[1] != 0 else None
    result = test.to_dict() | {"margin": margin, "completeness": completeness}
    evidence = dict(details) | {which: result}
    bound = margin["lower_bound"]
    return Measured(
        observed=test.p_value,
        conditions={"margin lower bound > 0": None if bound is None else bool(bound > 0)},
        numbers={
            "top_heads": [list(h) for h in e4.top],
            "chosen_value": round(test.observed, 4),
            "all_heads_value": round(float(values[1]), 4),
            "completeness": None if completeness is None else round(completeness, 3),
            "margin_lower_bound": None if bound is None else round(bound, 4),
            "R": test.R,
            "n_evaluated": test.n_evaluated,
            "stability_jaccard": None if e4.stability is None else round(e4.stability, 3),
            **e4.halves,
        },
        details=evidence,
        why_not=lambda t: (
            f"rank p = {test.p_value:.3f} after {test.n_evaluated} of R = {test.R} "
            f"layer-matched sets (top-5 {test.observed:.3f} vs random median "
            f"{np.median(test.null):.3f}); margin over the 95th percentile: lower bound "
            + ("undefined (stopped early)" if bound is None else f"{bound:.3f}")
        ),
        draw=_draw(claim, evidence),
    )


def at_peak(e4: E4Analysis, claim: str, k: int, details: Mapping[str, Any]) -> Measured:
    """C6-at-peak: ``P(X >= #top-k heads in layer L*)``, X hypergeometric (N x H heads,
    H of them at L*, k drawn); the top-k from half A, L* = argmax E(l) of the layer site
    on half B. The null is layer-agnostic: patching every head of a layer is patching
    its attention output, so heads and layer peak are not independent measurements of
    different things; a rejection says the top heads concentrate in the peak layer."""
    n_at_peak = sum(1 for layer, _ in e4.top if layer == e4.l_star_b)
    p = hypergeometric_overlap(n_at_peak, e4.n_layers * e4.n_heads, e4.n_heads, k)
    evidence = dict(details) | {
        "L_star_half_b": e4.l_star_b,
        "L_star_tied": e4.l_star_tied,
        "top_at_L_star": n_at_peak,
        "p_value": p,
    }
    return Measured(
        observed=p,
        numbers={
            "L_star_half_b": e4.l_star_b,
            "top_at_L_star": n_at_peak,
            "top_heads": [list(h) for h in e4.top],
            **e4.halves,
        },
        details=evidence,
        why_not=lambda t: (
            f"{n_at_peak} of the top-{k} heads (half A) lie at L* = {e4.l_star_b} (half B); "
            f"hypergeometric p = {p:.3f}"
        ),
        draw=_draw(claim, evidence),
    )


def alignment(e4: E4Analysis, claim: str, details: Mapping[str, Any]) -> Measured:
    """C6-alignment: the top-k decoder cross-attention heads on half A (k = the number of
    OpenAI's alignment heads for the checkpoint) against those heads, conditional on
    how many of the top-k fall in each layer: ``P(sum_l X_l >= overlap)``, ``X_l``
    hypergeometric (H heads of layer l, a_l alignment heads among them, c_l drawn)."""
    n_heads = e4.decoder.patched.shape[2]
    reference = [tuple(h) for h in alignment_heads(e4.model, e4.n_decoder_layers, n_heads)]
    k = len(reference)
    effects = e4.decoder.effects()
    top = top_heads(effects, k)
    overlap = sorted(set(top) & set(reference))
    drawn, marked = layer_histogram(top), layer_histogram(reference)
    strata = [(n_heads, marked.get(la, 0), drawn.get(la, 0))
              for la in range(1, e4.n_decoder_layers + 1)]  # fmt: skip
    p, expected = stratified_hypergeometric_overlap(len(overlap), strata)
    evidence = dict(details) | {
        "decoder_effects_half_a": effects.tolist(),
        "alignment_heads": [list(h) for h in reference],
        "top_decoder_heads_half_a": [list(h) for h in top],
        "overlap": [list(h) for h in overlap],
        "strata_heads_alignment_drawn": strata,
        "expected_overlap": expected,
        "p_value": p,
    }
    return Measured(
        observed=p,
        numbers={
            "k": k,
            "overlap": len(overlap),
            "expected_overlap": round(expected, 2),
            "overlap_heads": [list(h) for h in overlap],
            **e4.halves,
        },
        details=evidence,
        why_not=lambda t: (
            f"{len(overlap)} of the top-{k} decoder cross-attention heads are alignment "
            f"heads, {expected:.2f} expected given their layers; stratified p = {p:.3f}"
        ),
        draw=_draw(claim, evidence),
    )
