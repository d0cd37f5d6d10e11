"""E1 / E1b: where in the Whisper encoder is the audio consulted?

``analyse`` runs denoising activation patching (Heimersheim & Nanda 2024) on a family's
minimal pairs at every encoder layer of each site, the machinery's sanity checks and the
correlational profiles (CKA, norms). The claim statistics take that analysis:

- ``peak_in_region`` (C1, C1-named): ``P_boot(L* in S)``, ``L* = argmax_l E(l)``;
- ``sharpness`` (C1-sharp): L* interior and cross-fitted simultaneous lower bounds of
  ``E_B(L*) - E_B(l)`` of at least a margin (v3);
- ``agreement`` (C2): Spearman's rho of E(l) with the 1 - CKA and norm step profiles,
  exact permutation p (v3);
- ``stimulus_gate``: a family's median clean - corrupt gap must reach its gate (v3);
- ``sites_compared`` (reported) and ``exploratory`` (reported).

``E(l) = sum(m_patched(l) - m_corrupt) / sum(m_clean - m_corrupt)`` over the pairs past
the signed floor (a ratio of means, pre-registration v2).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from listenkit.analyses.listen_layer.patch_sweep import pair_items, sweep, sweep_items
from listenkit.analyses.listen_layer.profiles import EncoderProfiles, encoder_profiles
from listenkit.analyses.listen_layer.result import Sweep
from listenkit.engine.patching import degenerate_patch_deviation, null_patch_deviation
from listenkit.engine.sites import Site
from listenkit.experiments.cache import AnalysisCache, weights_sha256
from listenkit.experiments.measured import Measured, Requirement, enough_in_halves
from listenkit.experiments.progress import reporter
from listenkit.models.speech_model import SpeechModel
from listenkit.report.plots import plot_layer_claim, plot_profiles
from listenkit.stats import (
    bootstrap_curve,
    peak_location,
    probability_in,
    resample_counts,
    split_halves,
)
from listenkit.stats.grounding_profile import tied_maxima
from listenkit.stats.profile_correlation import monotone, spearman_permutation, step_profile
from listenkit.stats.sharpness import peak_comparisons
from listenkit.stimuli.store import StimulusSet

__all__ = [
    "E1Analysis",
    "agreement",
    "analyse",
    "attainable_under_holm",
    "enough_pairs",
    "exploratory",
    "peak_in_region",
    "relative_region",
    "sharpness",
    "sites",
    "sites_compared",
    "stimulus_gate",
]


@dataclass(frozen=True, kw_only=True)
class E1Analysis:
    """The sweeps of every site, the sanity checks and the profiles of one family."""

    model: str
    family: str
    n_layers: int
    sweeps: dict[str, Sweep]
    profiles: EncoderProfiles | None
    null_deviation: dict[str, float]  # the null check: max |m_patched - m_base| per site (nats)
    degenerate_deviation: float  # the degenerate check: max |m_patched - m_source| (nats)
    manifest_sha256: str
    stimulus_params: dict[str, Any]
    length_ratios: tuple[float, ...] = ()  # corrupt / clean length per pair
    timings: dict[str, float] = field(default_factory=dict)

    def evidence(self, site: str) -> dict[str, Any]:
        """What every E1 evidence file says about the sweep at ``site``."""
        s = self.sweeps[site]
        return {
            "site": s.site.to_dict(),
            "metric": s.metric,
            "reference": s.reference,
            "mode": s.mode,
            "exclusion_floor_nats": s.floor,
            "floor_rule": "signed: m_clean - m_corrupt >= floor",
            "n_pairs": len(s.ids),
            "n_used": int(s.included.sum()),
            "n_excluded": len(s.excluded_ids),
            "excluded_ids": list(s.excluded_ids),
            "per_pair_effects": {
                sid: [float(x) for x in row]
                for sid, row in zip(s.included_ids, s.included_effects(), strict=True)
            },
            "stimulus_manifest_sha256": self.manifest_sha256,
            "stimulus_params": self.stimulus_params,
            "timings_s": self.timings,
        }


def sites(section: Mapping[str, Any], profile: str) -> list[str]:
    """The sites E1 sweeps: every claim's, and the secondary ones in their profiles."""
    secondary = section["secondary"]
    extra = set(secondary["sites"]) if profile in secondary["sites_in_profiles"] else set()
    return sorted({c["site"] for c in section["claims"].values()} | extra)


def analyse(
    model: SpeechModel,
    pairs: StimulusSet,
    section: Mapping[str, Any],
    *,
    family: str,
    sites: Sequence[str],
    profile: str,
    null_check_stimuli: int,
    cache: AnalysisCache | None = None,
) -> E1Analysis:
    """Sweep ``sites`` at every encoder layer on ``pairs`` (metric, reference, mode and
    floor from the E1 ``section``), run the null and degenerate checks on the first
    ``null_check_stimuli`` pairs and compute the CKA and norm profiles; cached."""
    label = f"E1 {model.name} {family}"

    def compute() -> E1Analysis:
        start = time.perf_counter()
        items = pair_items(
            model,
            list(pairs),
            section["metric"],
            reference=section["reference"],
            mode=section["mode"],
        )

        def sweeps(done):
            return sweep_items(
                model,
                items,
                list(sites),
                section["metric"],
                reference=section["reference"],
                mode=section["mode"],
                floor=section["exclusion_floor_nats"],
                progress=reporter(f"{label} sweeps ({len(sites)} sites)", "pairs", resumed=done),
                done=done,
            )

        # its own cache entry, checkpointed after every batch: a killed run resumes
        results = _cached(cache, f"E1-sweeps-{'+'.join(sites)}", model, family, pairs, profile,
                          sweeps, batches=True)  # fmt: skip
        checked = items[:null_check_stimuli]
        null = null_patch_deviation(model, checked, [Site(component=s) for s in sites])
        degenerate = degenerate_patch_deviation(
            model, checked, site=section["secondary"]["degenerate_site"]
        )
        sweep_s = time.perf_counter() - start
        start = time.perf_counter()
        reporter(f"{label} CKA and norm profiles", "pairs")(0, len(pairs))
        profiles = encoder_profiles(model, list(pairs))
        return E1Analysis(
            model=model.name,
            family=family,
            n_layers=model.encoder_layers,
            sweeps={r.site.component: r for r in results},
            profiles=profiles,
            null_deviation=null,
            degenerate_deviation=float(degenerate),
            manifest_sha256=pairs.manifest_sha256,
            stimulus_params=_params(pairs),
            timings={
                "sweeps_s": round(sweep_s, 1),
                "profiles_s": round(time.perf_counter() - start, 1),
            },
        )

    return _cached(cache, "E1", model, family, pairs, profile, compute)


def analyse_unaligned(
    model: SpeechModel,
    pairs: StimulusSet,
    section: Mapping[str, Any],
    *,
    family: str,
    site: str,
    profile: str,
    cache: AnalysisCache | None = None,
) -> E1Analysis:
    """One site's sweep on pairs that need not be time-aligned (exploratory); cached."""

    def compute() -> E1Analysis:
        result = sweep(
            model,
            list(pairs),
            site,
            metric=section["metric"],
            reference=section["reference"],
            mode=section["mode"],
            floor=section["exclusion_floor_nats"],
            allow_unaligned=True,
            progress=reporter(f"exploratory {model.name} {family}", "pairs"),
        )
        return E1Analysis(
            model=model.name,
            family=family,
            n_layers=model.encoder_layers,
            sweeps={site: result},
            profiles=None,
            null_deviation={},
            degenerate_deviation=0.0,
            manifest_sha256=pairs.manifest_sha256,
            stimulus_params=_params(pairs),
            length_ratios=tuple(p.corrupt.audio.size / p.clean.audio.size for p in pairs),
        )

    return _cached(cache, "exploratory", model, family, pairs, profile, compute)


def _params(pairs: StimulusSet) -> dict[str, Any]:
    return dict(pairs.params) | {"texts": f"{len(pairs)} from text bank v1"}


def _cached(cache, kind, model, family, pairs, profile, compute, *, batches=False):
    if cache is None:
        return compute({}) if batches else compute()
    parts = {"weights": weights_sha256(model.module), "stimuli": pairs.manifest_sha256}
    return cache.get(kind, model.name, family, profile, parts, compute, batches=batches)


# -- claim statistics ------------------------------------------------------------------


def enough_pairs(e1: E1Analysis, site: str, needed: int) -> Requirement:
    """The pre-registered minimum of pairs past the signed floor."""
    s = e1.sweeps[site]
    n_used = int(s.included.sum())
    return Requirement(
        ok=n_used >= needed,
        reason=f"{n_used} of {len(s.ids)} pairs pass the signed floor "
        f"(m_clean - m_corrupt >= {s.floor} nats); the pre-registered minimum is {needed}",
        numbers={"n_used": n_used},
        details=e1.evidence(site),
    )


def relative_region(bounds: Sequence[float], n_layers: int, depth: str = "end") -> list[int]:
    """Layers whose relative depth lies in ``[low, high]`` (inclusive): ``l / N``
    (``depth="end"``, where the layer ends) or ``(l - 0.5) / N`` (``"midpoint"``, v3:
    the same rule for every N, symmetric about the middle)."""
    if depth not in ("end", "midpoint"):
        raise ValueError(f"depth must be 'end' or 'midpoint', got {depth!r}")
    low, high = bounds
    shift = 0.5 if depth == "midpoint" else 0.0
    return [
        layer
        for layer in range(1, n_layers + 1)
        if low - 1e-12 <= (layer - shift) / n_layers <= high + 1e-12
    ]


def _caveat(values: np.ndarray) -> dict[str, str]:
    """A ledger note when no layer recovers anything: then L* is not a peak."""
    if values.size and values.max() < 0:
        return {
            "caveat": f"E(l) is below 0 at every layer (at most {values.max():.2f}): "
            "every single-layer patch lowers the clean transcript's log-prob, so L* marks "
            "the least harmful layer, not a peak"
        }
    return {}


def peak_in_region(
    e1: E1Analysis,
    site: str,
    region: Sequence[int],
    label: str,
    rng: Any,
    n_resamples: int,
) -> Measured:
    """``P_boot(L* in region)``; ``rng(purpose)`` gives the cell's streams."""
    s = e1.sweeps[site]
    ratio, layers = s.ratio(), s.layers
    curve = bootstrap_curve(ratio, layers, rng=rng("curve"), n_resamples=n_resamples)
    peak = peak_location(ratio, layers, rng=rng("peak"), n_resamples=n_resamples)
    p = probability_in(peak.samples, region)
    distribution = {str(x): float(np.mean(peak.samples == x)) for x in layers}

    def draw(path, heading):
        plot_layer_claim(
            path,
            curve,
            title=f"{heading}: P({label}) = {p:.3f}",
            region=region,
            l_star_samples=peak.samples,
            per_stimulus=s.included_effects(),
        )

    return Measured(
        observed=p,
        numbers={
            "L_star": peak.observed,
            "region": list(region),
            "n_used": ratio.n,
            **_caveat(curve.mean),
        },
        details=e1.evidence(site)
        | {
            "curve": curve.to_records(),
            "L_star": peak.observed,
            "region_layers": list(region),
            "L_star_distribution": distribution,
            "p_region": p,
        },
        why_not=lambda t: (
            f"P_boot({label}) = {p:.3f} < {t} (L* = {peak.observed} of "
            f"{len(layers)}, n = {ratio.n})"
        ),
        draw=draw,
    )


def sharpness(
    e1: E1Analysis,
    site: str,
    *,
    salt: str,
    minimum_half: int,
    margin: float,
    confidence: float,
    rng: Any,
    n_resamples: int,
) -> tuple[Requirement, Measured | None]:
    """C1-sharp (v3): ``L* = argmax E`` on half A (split by ``salt``; an exact tie:
    inconclusive); on half B the simultaneous one-sided lower bounds (``confidence``) of
    ``E_B(L*) - E_B(l)`` for every other layer, each >= ``margin``; and L* interior
    (neither the first nor the last layer), a pre-registered further condition."""
    s = e1.sweeps[site]
    ratio, layers = s.ratio(), s.layers
    in_a = split_halves(s.included_ids, salt=salt)
    curve = bootstrap_curve(ratio, layers, rng=rng("curve"), n_resamples=n_resamples)
    half_a = [i for i, a in zip(s.included_ids, in_a, strict=True) if a]
    evidence = e1.evidence(site) | {"curve": curve.to_records(), "half_a_ids": half_a}
    halves, enough = enough_in_halves(in_a, minimum_half, "pairs", {"n_used": ratio.n}, evidence)
    if not enough.ok:
        return enough, None
    a, b = ratio.subset(in_a), ratio.subset(~in_a)
    tied = tied_maxima(a.value())
    numbers = {"n_used": ratio.n, **halves, **_caveat(curve.mean)}
    if len(tied) > 1:
        reason = f"an exact tie for L* on half A at layers {[layers[t] for t in tied]}"
        return Requirement(ok=False, reason=reason, numbers=numbers, details=evidence), None
    peak = tied[0]
    result = peak_comparisons(
        peak, b.value(), b.resampled, resample_counts(b.n, n_resamples, rng("sharpness")),
        layers, threshold=margin, inclusive=True, confidence=confidence,
    )  # fmt: skip
    interior = layers[peak] not in (layers[0], layers[-1])
    numbers |= {"L_star_half_a": layers[peak], "interior": interior,
                "failing_layers": result.get("failing_layers")}  # fmt: skip
    if result["sharp"] is None:
        return Requirement(ok=False, reason=result["reason"], numbers=numbers,
                           details=evidence | result), None  # fmt: skip
    observed = result["min_lower_bound"]

    def draw(path, heading):
        plot_layer_claim(
            path,
            curve,
            title=f"{heading}: L* = {layers[peak]} (half A), "
            f"min lower bound on B = {round(observed, 3)}",
            region=[layers[peak]],
            per_stimulus=s.included_effects(),
        )

    return Requirement(ok=True), Measured(
        observed=observed,
        conditions={"L* interior": interior},
        numbers=numbers,
        details=evidence | result,
        draw=draw,
        why_not=lambda t: (
            f"L* = {layers[peak]} chosen on half A (n = {halves['n_a']})"
            + ("" if interior else ", an edge layer (a monotone end, not a peak)")
            + f"; on half B (n = {halves['n_b']}) the simultaneous lower bounds of E(L*) - "
            f"E(l) fall below {t} at layers {result['failing_layers']} (smallest "
            f"{observed:.3f}, at L{result['closest_layer']})"
        ),
    )


def stimulus_gate(e1: E1Analysis, site: str, minimum_median_gap: float | None) -> Requirement:
    """A family's pre-registered gate: the median ``m_clean - m_corrupt`` over all its
    pairs is at least ``minimum_median_gap`` nats (None: no gate), else its cells are
    inconclusive (the corruption does not move the model enough to test anything)."""
    s = e1.sweeps[site]
    median = float(np.median(s.clean - s.corrupt))
    numbers = {"median_gap_nats": round(median, 3), "gate_nats": minimum_median_gap}
    if minimum_median_gap is None:
        return Requirement(ok=True, numbers=numbers)
    return Requirement(
        ok=median >= minimum_median_gap,
        reason=f"stimulus gate: the median m_clean - m_corrupt over the family's {len(s.ids)} "
        f"pairs is {median:.2f} nats, below the pre-registered {minimum_median_gap} nats",
        numbers=numbers,
        details=e1.evidence(site),
    )


def agreement(
    e1: E1Analysis, site: str, definition: str, minimum_norm_step: float
) -> tuple[Requirement, Measured]:
    """C2 (v3): Spearman's rho of the causal profile E(l) with each correlational
    profile (steps of 1 - CKA and of the norm ratio), each against the exact permutation
    null; observed = the larger p (both must be small). The norm profile must move:
    max_l |step| >= ``minimum_norm_step``, else inconclusive."""
    s = e1.sweeps[site]
    keep = s.included
    ratio, layers = s.ratio(), s.layers
    values = ratio.value()
    cka = step_profile(1 - e1.profiles.cka[keep].mean(axis=0))
    norm = step_profile(e1.profiles.norm_ratio[keep].mean(axis=0))
    tests = {"cka": spearman_permutation(values, cka), "norm": spearman_permutation(values, norm)}
    caveats = [f"{name} step profile and E(l) are both monotone: rho is a trend, not a peak"
               for name, prof in (("1 - CKA", cka), ("norm", norm))
               if monotone(prof) and monotone(values)]  # fmt: skip
    norm_size = float(np.max(np.abs(norm)))
    ps = [t["p_value"] for t in tests.values()]
    observed = None if None in ps else max(ps)
    numbers = {
        "rho_cka": round(tests["cka"]["rho"], 3),
        "p_cka": tests["cka"]["p_value"],
        "rho_norm": round(tests["norm"]["rho"], 3),
        "p_norm": tests["norm"]["p_value"],
        "norm_step_max": round(norm_size, 4),
        "n_used": ratio.n,
        "caveats": caveats,
        **_caveat(values),
    }
    details = e1.evidence(site) | {
        "tests": tests,
        "E": values.tolist(),
        "one_minus_cka_step": cka.tolist(),
        "norm_ratio_step": norm.tolist(),
        "definition": definition,
        "caveats": caveats,
    }
    constant = [name for name, t in tests.items() if t["p_value"] is None]
    moves = Requirement(
        ok=norm_size >= minimum_norm_step and not constant,
        reason=(
            f"a constant profile ({', '.join(constant)}): no ranking to compare"
            if constant
            else f"the norm profile's largest step is {norm_size:.4f}, below the "
            f"pre-registered {minimum_norm_step}: no ranking to compare"
        ),
        numbers=numbers,
        details=details,
    )
    title = (
        f"rho(1-CKA step) = {tests['cka']['rho']:.2f}, rho(norm step) = {tests['norm']['rho']:.2f}"
    )

    def draw(path, heading):
        one_minus_cka = 1 - e1.profiles.cka[keep].mean(axis=0)
        norm_ratio = e1.profiles.norm_ratio[keep].mean(axis=0)
        plot_profiles(path, layers, values, one_minus_cka, norm_ratio, title=f"{heading}: {title}")

    return moves, Measured(
        observed=observed,
        numbers=numbers,
        details=details,
        why_not=lambda t: (
            f"Spearman rho with E(l): 1 - CKA steps {tests['cka']['rho']:.2f} (p = "
            f"{tests['cka']['p_value']:.3f}), norm steps {tests['norm']['rho']:.2f} (p = "
            f"{tests['norm']['p_value']:.3f}); the larger p is not below {t}"
        ),
        draw=draw,
    )


# Encoder depth of the published Whisper checkpoints (openai-whisper's ModelDimensions).
ENCODER_LAYERS = {"whisper-tiny": 4, "whisper-tiny.en": 4, "whisper-base": 6,
                  "whisper-base.en": 6, "whisper-small": 12, "whisper-small.en": 12,
                  "whisper-medium": 24, "whisper-medium.en": 24, "whisper-large-v2": 32,
                  "whisper-large-v3": 32}  # fmt: skip


def attainable_under_holm(grid: Sequence[Any], cell: Any, alpha: float) -> Requirement:
    """C2's permutation p can be no smaller than ``1 / N!``. Holm is monotone, so the
    best a cell can do is its adjusted p when every cell of the ``grid`` (CellIds of the
    profile) takes its smallest possible p: if that is not below ``alpha``, no data can
    support the cell and it is inconclusive (the design, not the model, would decide)."""
    from math import factorial

    from listenkit.stats import holm

    cells = sorted(grid, key=lambda c: c.id)
    smallest = [1.0 / factorial(ENCODER_LAYERS.get(c.model, 32)) for c in cells]
    best = float(holm(smallest)[[c.id for c in cells].index(cell.id)])
    return Requirement(
        ok=best < alpha,
        reason=f"with {ENCODER_LAYERS.get(cell.model)} encoder layers the smallest possible "
        f"permutation p is {smallest[[c.id for c in cells].index(cell.id)]:.4f}; even if every "
        f"cell of the grid ({len(cells)}) took its smallest p, Holm would give {best:.3f}, "
        f"not below {alpha}",
        numbers={"best_possible_holm_p": round(best, 4)},
    )


def sanity_deviations(e1: E1Analysis, degenerate_tolerance: float, null_tolerance: float) -> None:
    """Raise ``RuntimeError`` (an error verdict) when the machinery's checks fail."""
    if e1.degenerate_deviation > degenerate_tolerance:
        raise RuntimeError(
            f"machinery broken: whole-residual patching moved the metric "
            f"{e1.degenerate_deviation:.2e} nats away from the clean run's"
        )
    if max(e1.null_deviation.values()) > null_tolerance:
        raise RuntimeError(
            f"machinery broken: patching the base run into itself moved the metric by "
            f"{max(e1.null_deviation.values()):.2e} nats ({e1.null_deviation})"
        )


def sites_compared(
    e1: E1Analysis,
    main: str,
    tolerances: tuple[float, float],
    null_check_stimuli: int,
    rng: Any,
    n_resamples: int,
) -> Measured:
    """Reported: E(l) of every swept site next to the claims' site, with the sanity
    checks' deviations."""
    curves = {
        site: bootstrap_curve(s.ratio(), s.layers, rng=rng(site), n_resamples=n_resamples)
        for site, s in sorted(e1.sweeps.items(), key=lambda kv: kv[0] != main)
        if s.included.any()
    }
    null_worst = max(e1.null_deviation.values())

    def draw(path, heading):
        others = {k: v for k, v in curves.items() if k != main}
        plot_layer_claim(
            path,
            curves[main],
            title=f"sites compared, {heading.split(' ', 1)[1]}",
            extra_curves=others,
            reference_line=0.0,
        )

    return Measured(
        observed=None,
        numbers={
            "threshold": list(tolerances),
            "observed": [float(f"{e1.degenerate_deviation:.3g}"), float(f"{null_worst:.3g}")],
        },
        details={
            "curves": {site: c.to_records() for site, c in curves.items()},
            "degenerate_check_max_abs_nats": e1.degenerate_deviation,
            "null_check_max_abs_nats": e1.null_deviation,
            "null_check_stimuli": null_check_stimuli,
            "n_used": {site: int(e1.sweeps[site].included.sum()) for site in curves},
            "stimulus_manifest_sha256": e1.manifest_sha256,
            "timings_s": e1.timings,
        },
        draw=draw if main in curves else None,
    )


def exploratory(
    e1: E1Analysis, site: str, description: str, rng: Any, n_resamples: int
) -> Measured:
    """Reported: E(l) on pairs that are not time-aligned (frames of different speech are
    spliced), a look, never a claim."""
    s = e1.sweeps[site]
    lengths = list(e1.length_ratios)
    caveat = (
        f"not time-aligned: corrupt/clean length ratio {min(lengths):.2f} to {max(lengths):.2f}; "
        "frame-by-frame patching splices frames of different speech (exploratory)"
    )
    n_used = int(s.included.sum())
    curve = None
    if n_used:
        curve = bootstrap_curve(s.ratio(), s.layers, rng=rng("curve"), n_resamples=n_resamples)

    def draw(path, heading):
        plot_layer_claim(
            path,
            curve,
            title=f"exploratory {e1.family}, {e1.model}: {site} (not aligned)",
            per_stimulus=s.included_effects(),
            reference_line=0.0,
        )

    return Measured(
        observed=None,
        numbers={
            "observed": None if curve is None else [round(float(x), 3) for x in curve.mean],
            "n_used": n_used,
            "caveat": caveat,
        },
        details={
            "description": description,
            "site": site,
            "caveat": caveat,
            "curve": None if curve is None else curve.to_records(),
            "n_pairs": len(s.ids),
            "n_used": n_used,
            "length_ratios": lengths,
            "stimulus_manifest_sha256": e1.manifest_sha256,
        },
        draw=draw if curve is not None else None,
    )
