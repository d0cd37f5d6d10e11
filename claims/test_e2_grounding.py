"""E2 / E5: how much of the decision flows through the audio stream, layer by layer?

Each test is one pre-registered claim on one (model, conflict family); thresholds come
from ``[e2]`` in preregistration.toml. Interchange interventions on audio-text
conflicts (Geiger et al.): ``dA(l)`` is the share of the audio's effect on the margin
``m = log p(a) - log p(b)`` carried by the audio stream at layer ``l``, ``dT(l)`` the
share of the text channel's effect carried by the text stream (both ratios of means
over the conflicts past the signed floors, pre-registration v2), and
``gc(l) = dA / (dA + dT)`` (``listenkit.analyses.grounding.whisper``).

A stream at layer ``l`` is what block ``l``'s attention reads from that stream's
positions (pre-registration v2): on Whisper, block ``l``'s cross-attention keys and
values (audio) and its self-attention keys and values at the prompt positions (text);
nothing is forced at the last layer. ``gc = dA+ / (dA+ + dT+)`` lies in [0, 1].
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.stimuli import claim_rng, preregistration
from listenkit.analyses.grounding.margins import text_dominance_ratio
from listenkit.report.evidence import environment
from listenkit.report.plots import plot_grounding
from listenkit.stats import (
    bootstrap_grounding,
    drop_and_recover,
    gc_cross_fitted_sharpness,
    gc_group_difference_test,
    probability_drop_and_recover,
    split_halves,
)

PREREG = preregistration()
E2 = PREREG["e2"]
MINIMUMS = PREREG["minimums"]
GC_OPTIONS = {"min_total": E2["gc_min_total"], "positive_part": E2["gc_positive_part"]}
CLAIMS = E2["claims"]
MODELS = [*E2["models"], *E2.get("optional_models", [])]
FAMILIES = list(E2["families"])
STRUCTURAL_NOTES = {
    "decoder.resid": (
        "v1 text stream = residual after block l at the prompt positions: after the last block "
        "it feeds no later computation, so dT(N) = 0 and gc(N) = 1 (where defined) by construction"
    ),
    "lm.resid": (
        "v1 streams = residuals after layer l at earlier positions: after the last layer neither "
        "feeds a scored position, so dA(N) = dT(N) = 0 and gc(N) is undefined"
    ),
}
READ_NOTE = (
    "streams = the keys and values block l's attention reads at that stream's positions; "
    "nothing is forced at any layer (the last included)"
)


def _structural_note(e2, *, short: bool = False) -> str:
    note = STRUCTURAL_NOTES.get(e2.sweep.text_site.component)
    if short:
        return "" if note is None else "v1 streams: the last layer is structural"
    return READ_NOTE if note is None else note


def _caveat(e2, layer) -> dict:
    """A ledger note when the peak sits where gc = 1 by construction (v1 streams only)."""
    if layer == e2.n_layers and e2.sweep.text_site.component == "decoder.resid":
        return {
            "caveat": f"l*_gc = {layer} is the last layer, where dT = 0 and gc = 1 by "
            "construction (the residual after the last block feeds nothing later)"
        }
    return {}


def _params():
    return [
        pytest.param(m, f, id=f"{m}-{f}", marks=pytest.mark.xdist_group(f"e2-{m}-{f}"))
        for m in MODELS
        for f in FAMILIES
    ]


def _resamples(profile: str) -> int:
    return E2["bootstrap_resamples"][profile]


def _rng(*keys: str) -> np.random.Generator:
    """One independent stream per (claim, model, family, purpose)."""
    return claim_rng(E2["seed"], *keys)


def _data(e2, claim_id: str, profile: str, claim_record):
    """(sweep, dA, dT) as ratios of means over the used conflicts; inconclusive (with the
    evidence written) below the pre-registered minimum."""
    __tracebackhide__ = True
    sweep = e2.sweep
    n_used, needed = int(sweep.included.sum()), MINIMUMS["e2_n_used"]
    if n_used < needed:
        reason = (
            f"{n_used} of {len(sweep.ids)} conflicts pass both signed floors ({sweep.floor} "
            f"nats; exclusions {sweep.exclusions()}); the pre-registered minimum is {needed}"
        )
        claim_record.set(statistic=CLAIMS[claim_id]["statistic"], n_used=n_used)
        claim_record.write(
            claim_id, e2.model_name, e2.family,
            _evidence(e2, claim_id, profile, None) | {"reason": reason},
        )  # fmt: skip
        claim_record.inconclusive(reason)
    return sweep, sweep.da_ratio(), sweep.dt_ratio()


def _evidence(e2, claim_id: str, profile: str, curves) -> dict:
    sweep = e2.sweep
    tdr = text_dominance_ratio(sweep.m_x, e2.stimuli)
    return {
        "statement": CLAIMS[claim_id]["statement"],
        "source": CLAIMS[claim_id]["source"],
        "preregistration_version": PREREG["version"],
        "definitions": {k: E2[k] for k in ("metric", "interventions", "dA", "dT", "gc")}
        | {"gc_positive_part": E2["gc_positive_part"]},
        "audio_stream": sweep.audio_site.to_dict(),
        "text_stream": sweep.text_site.to_dict(),
        "structural_note": _structural_note(e2),
        "n_layers": e2.n_layers,
        "curves": None if curves is None else curves.to_records(),
        "per_stimulus_dA": _per_stimulus(sweep.da(), sweep),
        "per_stimulus_dT": _per_stimulus(sweep.dt(), sweep),
        "gc_min_total": E2["gc_min_total"],
        "exclusion_floor_nats": sweep.floor,
        "n_stimuli": len(sweep.ids),
        "n_used": int(sweep.included.sum()),
        "n_failures_used": int((sweep.failures & sweep.included).sum()),
        "exclusions_per_flip_type": sweep.exclusions(),
        "dropped_not_lined_up_per_flip_type": e2.dropped,
        "text_dominance_ratio": {k: {"tdr": v, "n": n} for k, (v, n) in tdr.items()},
        "median_margin_m_x": float(np.median(sweep.m_x)),
        "bootstrap_resamples": _resamples(profile),
        "seed": E2["seed"],
        "stimulus_manifest_sha256": e2.manifest_sha256,
        "versions": environment(),
        "timings_s": e2.timings,
    }


def _per_stimulus(values: np.ndarray, sweep) -> dict[str, list[float]]:
    ids = [i for i, keep in zip(sweep.ids, sweep.included, strict=True) if keep]
    return {i: [float(x) for x in row] for i, row in zip(ids, values, strict=True)}


def _plot(claim_record, claim_id, e2, curves, title, region=None, samples=None):
    plot_grounding(
        claim_record.plot_path(claim_id, e2.model_name, e2.family),
        curves,
        title=title,
        region=region,
        l_star_samples=samples,
        note=_structural_note(e2, short=True),
    )


@pytest.mark.claim("C3")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c3_gc_peaks_mid_to_late(model_name, family, e2, profile, claim_record):
    """C3 (E2): "gc peaks sharply in mid-to-late layers (16-22 of 32 in Qwen2-Audio-7B)".

    Supported iff P_boot(l*_gc / N in [0.5, 0.69]) >= 0.95, l*_gc = argmax_l gc(l).
    """
    claim = CLAIMS["C3"]
    sweep, da, dt = _data(e2, "C3", profile, claim_record)
    low, high = claim["region_relative"]
    n = e2.n_layers
    region = [layer for layer in sweep.layers if low - 1e-12 <= layer / n <= high + 1e-12]
    curves = bootstrap_grounding(
        da, dt, sweep.layers, rng=_rng("C3", model_name, family, "curves"),
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    p = float(np.isin(curves.l_star_samples, region).mean())
    distribution = {str(x): float(np.mean(curves.l_star_samples == x)) for x in sweep.layers}
    distribution["undefined"] = float(np.mean(curves.l_star_samples == 0))
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(p, 4),
        l_star_gc=curves.l_star,
        region=region,
        n_used=curves.n,
        **_caveat(e2, curves.l_star),
    )
    claim_record.write(
        "C3",
        model_name,
        family,
        _evidence(e2, "C3", profile, curves)
        | {"l_star_gc": curves.l_star, "region_layers": region,
           "l_star_distribution": distribution, "p_region": p},
    )  # fmt: skip
    _plot(
        claim_record, "C3", e2, curves,
        f"C3 {model_name} {family}: P(l*/N in [0.5, 0.69]) = {p:.3f}",
        region=region, samples=curves.l_star_samples,
    )  # fmt: skip
    if curves.l_star == 0:
        claim_record.inconclusive("gc is undefined at every layer (dA + dT < gc_min_total)")
    assert p >= claim["threshold"], (
        f"C3 not supported on {model_name}/{family}: P_boot(l*_gc/N in [0.5, 0.69]) = {p:.3f} "
        f"< {claim['threshold']} (l*_gc = {curves.l_star} of {n}, region {region}, "
        f"n = {curves.n})"
    )


@pytest.mark.claim("C3-sharp")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c3_sharp_gc_peak(model_name, family, e2, profile, claim_record):
    """C3-sharp (E2): "The gc peak is sharp". Cross-fitted: l* = argmax gc on half A of the
    conflicts (split by a hash of the stimulus id); supported iff on half B the
    simultaneous 95% lower bounds of gc_B(l*) - gc_B(l) are > 0 for every other layer
    where gc_B is defined (a resample with gc undefined counts against)."""
    claim = CLAIMS["C3-sharp"]
    sweep, da, dt = _data(e2, "C3-sharp", profile, claim_record)
    ids = [i for i, keep in zip(sweep.ids, sweep.included, strict=True) if keep]
    in_a = split_halves(ids, salt=PREREG["split"]["salt"])
    halves = {"n_a": int(in_a.sum()), "n_b": int((~in_a).sum())}
    curves = bootstrap_grounding(
        da, dt, sweep.layers, rng=_rng("C3-sharp", model_name, family, "curves"),
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    evidence = _evidence(e2, "C3-sharp", profile, curves) | {
        "split": PREREG["split"] | {"half_a_ids": [i for i, a in zip(ids, in_a, strict=True) if a]}
    }
    if min(halves.values()) < MINIMUMS["sharpness_half"]:
        needed = MINIMUMS["sharpness_half"]
        reason = f"halves of {halves} conflicts; the pre-registered minimum is {needed}"
        claim_record.set(statistic=claim["statistic"], n_used=curves.n, **halves)
        claim_record.write("C3-sharp", model_name, family, evidence | halves | {"reason": reason})
        claim_record.inconclusive(reason)
    result = gc_cross_fitted_sharpness(
        da, dt, sweep.layers, in_a, rng=_rng("C3-sharp", model_name, family, "sharpness"),
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    observed = result.get("min_lower_bound")
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=None if observed is None else round(observed, 4),
        l_star_gc_half_a=result.get("L_star"),
        closest_layer=result.get("closest_layer"),
        n_used=curves.n,
        **halves,
        **_caveat(e2, result.get("L_star")),
    )
    claim_record.write("C3-sharp", model_name, family, evidence | result)
    _plot(
        claim_record, "C3-sharp", e2, curves,
        f"C3-sharp {model_name} {family}: l* = {result.get('L_star')} (half A), min lower "
        f"bound on B = {observed if observed is None else round(observed, 3)}",
        region=[result["L_star"]] if result.get("L_star") else None,
    )  # fmt: skip
    if result["sharp"] is None:
        claim_record.inconclusive(result["reason"])
    assert observed > claim["threshold"], (
        f"C3-sharp not supported on {model_name}/{family}: l* = {result['L_star']} chosen on "
        f"half A (n = {halves['n_a']}); on half B (n = {halves['n_b']}) the simultaneous 95% "
        f"lower bound of gc(l*) - gc(L{result['closest_layer']}) is {observed:.3f}, not > "
        f"{claim['threshold']}"
    )


@pytest.mark.claim("C5a")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c5a_listen_layer_suppressed_in_failures(model_name, family, e2, profile, claim_record):
    """C5a (E5): "The Listen Layer is suppressed in text-dominant failures". Failures are
    stimuli with m(x) < 0; supported iff gc at the all-stimuli l*_gc is lower in
    failures than in successes: one-sided permutation p, Holm-adjusted across the cells
    of this claim in the run, < 0.05. The test itself judges the raw p; the ledger's
    verdict is the Holm-adjusted one."""
    claim = CLAIMS["C5a"]
    sweep, da, dt = _data(e2, "C5a", profile, claim_record)
    failures = sweep.failures[sweep.included]
    counts = {"n_failures": int(failures.sum()), "n_successes": int((~failures).sum())}
    curves = bootstrap_grounding(
        da, dt, sweep.layers, rng=_rng("C5a", model_name, family, "curves"),
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    evidence = _evidence(e2, "C5a", profile, curves) | {"l_star_gc": curves.l_star} | counts
    short = [
        f"{counts[key]} {what} (minimum {MINIMUMS[minimum]})"
        for key, what, minimum in (
            ("n_failures", "failures", "c5a_failures"),
            ("n_successes", "successes", "c5a_successes"),
        )
        if counts[key] < MINIMUMS[minimum]
    ]
    if short or curves.l_star == 0:
        reason = "; ".join(short) or "gc is undefined at every layer"
        claim_record.set(statistic=claim["statistic"], n_used=curves.n, **counts)
        claim_record.write("C5a", model_name, family, evidence | {"reason": reason})
        claim_record.inconclusive(reason)
    test = gc_group_difference_test(
        da, dt, failures, sweep.layers.index(curves.l_star),
        rng=_rng("C5a", model_name, family, "permutation"),
        n_permutations=E2["permutations"][profile], **GC_OPTIONS,
    )  # fmt: skip
    multiplicity = PREREG["multiplicity"]
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(test["p_value"], 4),
        p_raw=round(test["p_value"], 6),
        multiplicity=multiplicity["method"],
        alpha=multiplicity["alpha"],
        l_star_gc=curves.l_star,
        n_used=curves.n,
        **counts,
        **_caveat(e2, curves.l_star),
    )
    rows = np.flatnonzero(failures)
    failure_curves = bootstrap_grounding(
        sweep.da_ratio(rows), sweep.dt_ratio(rows), sweep.layers,
        rng=_rng("C5a", model_name, family, "failure-curves"),
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    claim_record.write(
        "C5a",
        model_name,
        family,
        evidence | {"test": test, "failure_curves": failure_curves.to_records()},
    )
    _plot(
        claim_record, "C5a", e2, curves,
        f"C5a {model_name} {family}: raw p = {test['p_value']:.3f} "
        f"({counts['n_failures']} failures)",
        region=[curves.l_star],
    )  # fmt: skip
    if "reason" in test:
        claim_record.inconclusive(test["reason"])
    assert test["p_value"] < claim["threshold"], (
        f"C5a not supported on {model_name}/{family}: permutation p = {test['p_value']:.3f} "
        f"not < {claim['threshold']} before Holm (gc at l*_gc = {curves.l_star}: "
        f"successes - failures = {test.get('observed', float('nan')):.3f}; "
        f"{counts['n_failures']} failures of {curves.n})"
    )


@pytest.mark.claim("C5b")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c5b_failures_drop_then_recover(model_name, family, e2, profile, claim_record):
    """C5b (E5): "In failures, gc drops mid-layer and then recovers". Supported iff
    P_boot(exists l1 < l2 < l3: gc(l2) <= gc(l1) - 0.1, gc(l3) >= gc(l2) + 0.1) >= 0.9
    on the failure subset (m(x) < 0)."""
    claim = CLAIMS["C5b"]
    sweep, da, dt = _data(e2, "C5b", profile, claim_record)
    failures = sweep.failures[sweep.included]
    n_failures = int(failures.sum())
    curves = bootstrap_grounding(
        da, dt, sweep.layers, rng=_rng("C5b", model_name, family, "curves"),
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    if n_failures < MINIMUMS["c5b_failures"]:
        reason = f"{n_failures} failures; the pre-registered minimum is {MINIMUMS['c5b_failures']}"
        claim_record.set(statistic=claim["statistic"], n_used=curves.n, n_failures=n_failures)
        claim_record.write(
            "C5b", model_name, family,
            _evidence(e2, "C5b", profile, curves) | {"reason": reason, "n_failures": n_failures},
        )  # fmt: skip
        claim_record.inconclusive(reason)
    rows = np.flatnonzero(failures)
    fa, ft = sweep.da_ratio(rows), sweep.dt_ratio(rows)
    failure_curves = bootstrap_grounding(
        fa, ft, sweep.layers, rng=_rng("C5b", model_name, family, "failure-curves"),
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    p = probability_drop_and_recover(
        fa, ft, rng=_rng("C5b", model_name, family, "pattern"), drop=claim["drop"],
        n_resamples=_resamples(profile), **GC_OPTIONS,
    )  # fmt: skip
    observed_pattern = bool(drop_and_recover(failure_curves.gc, drop=claim["drop"])[0])
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(p, 4),
        n_failures=n_failures,
        n_used=curves.n,
    )
    claim_record.write(
        "C5b",
        model_name,
        family,
        _evidence(e2, "C5b", profile, curves)
        | {
            "p_drop_and_recover": p,
            "pattern_in_point_estimate": observed_pattern,
            "failure_curves": failure_curves.to_records(),
        },
    )
    _plot(
        claim_record, "C5b", e2, failure_curves,
        f"C5b {model_name} {family}: failures (n = {n_failures}), P(drop+recover) = {p:.3f}",
    )  # fmt: skip
    assert p >= claim["threshold"], (
        f"C5b not supported on {model_name}/{family}: P_boot(drop then recover) = {p:.3f} "
        f"< {claim['threshold']} on {n_failures} failures"
    )


@pytest.mark.secondary("null-check")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_null_check(model_name, family, e2, profile, claim_record):
    """Sanity (ERRORS when it fails): both streams' sites patched from the base run x into
    itself reproduce m(x) exactly, at every decoder layer (Whisper; audio LMs: not run)."""
    if e2.null_deviation is None:
        pytest.skip(f"the null check runs on Whisper's decoder only, not on {model_name}")
    worst = max(e2.null_deviation.values())
    tolerance = PREREG["sanity"]["null_tolerance_nats"]
    claim_record.set(
        statistic="null-check max |m_patched - m(x)| (nats)",
        threshold=tolerance,
        observed=float(f"{worst:.3g}"),
    )
    claim_record.write(
        "null-check", model_name, family,
        {"null_check_max_abs_nats": e2.null_deviation,
         "null_check_stimuli": PREREG["sanity"]["null_check_stimuli"], "versions": environment()},
    )  # fmt: skip
    if worst > tolerance:
        raise RuntimeError(
            f"machinery broken: patching x into itself moved the margin by {worst:.2e} nats "
            f"({e2.null_deviation})"
        )


@pytest.mark.secondary("TDR")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_text_dominance_ratio_per_flip_type(model_name, family, e2, profile, claim_record):
    """Reported, not a verdict: ALME's Text Dominance Ratio (share of stimuli with
    m(x) < 0) per flip type, with the stimuli dropped or excluded per flip type."""
    sweep = e2.sweep
    tdr = text_dominance_ratio(sweep.m_x, e2.stimuli)
    claim_record.set(
        statistic="TDR = share of m(x) < 0",
        tdr={k: round(v, 3) for k, (v, _) in tdr.items()},
        n={k: n for k, (_, n) in tdr.items()},
        n_used_for_gc=int(sweep.included.sum()),
    )
    claim_record.write(
        "TDR",
        model_name,
        family,
        {
            "text_dominance_ratio": {k: {"tdr": v, "n": n} for k, (v, n) in tdr.items()},
            "margins_m_x": dict(zip(sweep.ids, sweep.m_x.tolist(), strict=True)),
            "exclusions_per_flip_type": sweep.exclusions(),
            "dropped_not_lined_up_per_flip_type": e2.dropped,
            "stimulus_manifest_sha256": e2.manifest_sha256,
            "versions": environment(),
        },
    )
