"""E1 / E1b: where in the Whisper encoder is the audio consulted?

Each test is one pre-registered claim from "Localizing the Listen Layer in Speech
LLMs" on one (model, stimulus family). Thresholds come from preregistration.toml.
Denoising activation patching (Heimersheim & Nanda 2024): restore the clean run's
encoder attention output at one layer into the corrupt run, and measure the
recovery of the clean run's greedy transcript log-prob. Pre-registration v2: the
curve is a ratio of means over the pairs past the signed floor,
``E(l) = sum(m_patched(l) - m_corrupt) / sum(m_clean - m_corrupt)``; sharpness is
cross-fitted; a cell below a pre-registered minimum is inconclusive.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.stimuli import claim_rng, preregistration
from listenkit.report.evidence import environment
from listenkit.report.plots import plot_layer_claim, plot_profiles
from listenkit.stats import (
    bootstrap_curve,
    correlational_agreement,
    cross_fitted_sharpness,
    peak_location,
    probability_in,
    split_halves,
)

PREREG = preregistration()
COMMON = PREREG["common"]
CLAIMS = PREREG["claims"]
MINIMUMS = PREREG["minimums"]
MODELS = COMMON["models"]
FAMILIES = COMMON["families"]
NAMED_MODELS = CLAIMS["C1-named"]["models"]


def _params(models):
    return [
        pytest.param(m, f, id=f"{m}-{f}", marks=pytest.mark.xdist_group(f"{m}-{f}"))
        for m in models
        for f in FAMILIES
    ]


def _resamples(profile: str) -> int:
    return COMMON["bootstrap_resamples"][profile]


def _rng(*keys: str) -> np.random.Generator:
    """One independent stream per (claim, model, family, purpose)."""
    return claim_rng(COMMON["seed"], *keys)


def _base_evidence(e1, claim_id: str, profile: str) -> dict:
    sweep = e1.sweeps[CLAIMS[claim_id]["site"]]
    return {
        "statement": CLAIMS[claim_id]["statement"],
        "source": CLAIMS[claim_id]["source"],
        "preregistration_version": PREREG["version"],
        "site": sweep.site.to_dict(),
        "metric": COMMON["metric"],
        "effect": COMMON["effect"],
        "reference": COMMON["reference"],
        "mode": COMMON["mode"],
        "exclusion_floor_nats": sweep.floor,
        "floor_rule": "signed: m_clean - m_corrupt >= floor",
        "n_pairs": len(sweep.ids),
        "n_used": int(sweep.included.sum()),
        "n_excluded": len(sweep.excluded_ids),
        "excluded_ids": list(sweep.excluded_ids),
        "per_pair_effects": {
            sid: [float(x) for x in row]
            for sid, row in zip(sweep.included_ids, sweep.included_effects(), strict=True)
        },
        "bootstrap_resamples": _resamples(profile),
        "seed": COMMON["seed"],
        "stimulus_manifest_sha256": e1.pairs.manifest_sha256,
        "stimulus_params": dict(e1.pairs.params) | {"texts": f"{len(e1.pairs)} from text bank v1"},
        "versions": environment(),
        "timings_s": e1.timings,
    }


def _caveat(curve_values: np.ndarray) -> dict:
    """A ledger note when no layer recovers anything: then L* is not a peak."""
    if curve_values.size and curve_values.max() < 0:
        return {
            "caveat": f"E(l) is below 0 at every layer (at most {curve_values.max():.2f}): "
            "every single-layer patch lowers the clean transcript's log-prob, so L* marks "
            "the least harmful layer, not a peak"
        }
    return {}


def _minimum_met(e1, claim_id, model_name, family, profile, claim_record) -> None:
    """Inconclusive (with the evidence written) when too few pairs pass the floor."""
    __tracebackhide__ = True
    sweep = e1.sweeps[CLAIMS[claim_id]["site"]]
    n_used, needed = int(sweep.included.sum()), MINIMUMS["e1_n_used"]
    if n_used < needed:
        reason = (
            f"{n_used} of {len(sweep.ids)} pairs pass the signed floor "
            f"(m_clean - m_corrupt >= {sweep.floor} nats); the pre-registered minimum is {needed}"
        )
        claim_record.set(statistic=CLAIMS[claim_id]["statistic"], n_used=n_used)
        claim_record.write(
            claim_id, model_name, family, _base_evidence(e1, claim_id, profile) | {"reason": reason}
        )
        claim_record.inconclusive(reason)


def _peak_region_claim(claim_id, region, label, model_name, family, e1, profile, claim_record):
    """Shared body of C1 and C1-named: P_boot(L* in region) against the threshold."""
    __tracebackhide__ = True
    _minimum_met(e1, claim_id, model_name, family, profile, claim_record)
    claim = CLAIMS[claim_id]
    sweep = e1.sweeps[claim["site"]]
    ratio, layers = sweep.ratio(), sweep.layers
    n = _resamples(profile)
    curve = bootstrap_curve(ratio, layers, rng=_rng(claim_id, model_name, family, "curve"),
                            n_resamples=n)  # fmt: skip
    peak = peak_location(ratio, layers, rng=_rng(claim_id, model_name, family, "peak"),
                         n_resamples=n)  # fmt: skip
    p = probability_in(peak["samples"], region)
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(p, 4),
        L_star=peak["observed"],
        region=region,
        n_used=ratio.n,
        **_caveat(curve.mean),
    )
    distribution = {str(x): float(np.mean(peak["samples"] == x)) for x in layers}
    claim_record.write(
        claim_id,
        model_name,
        family,
        _base_evidence(e1, claim_id, profile)
        | {
            "curve": curve.to_records(),
            "L_star": peak["observed"],
            "region_layers": region,
            "L_star_distribution": distribution,
            "p_region": p,
            "threshold": claim["threshold"],
        },
    )
    plot_layer_claim(
        claim_record.plot_path(claim_id, model_name, family),
        curve,
        title=f"{claim_id} {model_name} {family}: P({label}) = {p:.3f}",
        region=region,
        l_star_samples=peak["samples"],
        per_stimulus=sweep.included_effects(),
    )
    assert p >= claim["threshold"], (
        f"{claim_id} not supported on {model_name}/{family}: P_boot({label}) = {p:.3f} "
        f"< {claim['threshold']} (L* = {peak['observed']} of {len(layers)}, n = {ratio.n})"
    )


@pytest.mark.claim("C1")
@pytest.mark.parametrize(("model_name", "family"), _params(MODELS))
def test_c1_causal_peak_at_half_depth(model_name, family, e1, profile, claim_record):
    """C1 (Phase 1, E1): "A sharp causal peak at ~50% depth of the Whisper encoder".

    Supported iff P_boot(L*/N in [1/3, 2/3]) >= 0.95, L* = argmax_l E(l) of
    encoder.attn_out (ratio of means).
    """
    low, high = CLAIMS["C1"]["region_relative"]
    n = e1.model.encoder_layers
    region = [layer for layer in range(1, n + 1) if low - 1e-12 <= layer / n <= high + 1e-12]
    _peak_region_claim(
        "C1", region, "L*/N in [1/3, 2/3]", model_name, family, e1, profile, claim_record
    )


@pytest.mark.claim("C1-named")
@pytest.mark.parametrize(("model_name", "family"), _params(NAMED_MODELS))
def test_c1_named_listen_layer(model_name, family, e1, profile, claim_record):
    """C1-named (Phase 1, E1): "The Listen Layer is layer 3 in Whisper-base (3-4 in small,
    6-7 in large)". Supported iff P_boot(L* in S) >= 0.95 with S from the pre-registration.
    """
    region = CLAIMS["C1-named"]["region"][model_name]
    _peak_region_claim(
        "C1-named", region, f"L* in {region}", model_name, family, e1, profile, claim_record
    )


@pytest.mark.claim("C1-sharp")
@pytest.mark.parametrize(("model_name", "family"), _params(MODELS))
def test_c1_sharp_peak(model_name, family, e1, profile, claim_record):
    """C1-sharp (Phase 1, E1): "The peak is sharp". Cross-fitted: L* = argmax E on half A
    of the pairs (split by a hash of the pair id); supported iff on half B the
    simultaneous 95% lower bounds of E_B(L*) - E_B(l) are > 0 for every other layer l.
    """
    _minimum_met(e1, "C1-sharp", model_name, family, profile, claim_record)
    claim = CLAIMS["C1-sharp"]
    sweep = e1.sweeps[claim["site"]]
    ratio, layers = sweep.ratio(), sweep.layers
    in_a = split_halves(sweep.included_ids, salt=PREREG["split"]["salt"])
    curve = bootstrap_curve(ratio, layers, rng=_rng("C1-sharp", model_name, family, "curve"),
                            n_resamples=_resamples(profile))  # fmt: skip
    halves = {"n_a": int(in_a.sum()), "n_b": int((~in_a).sum())}
    evidence = _base_evidence(e1, "C1-sharp", profile) | {
        "curve": curve.to_records(),
        "split": PREREG["split"] | {"half_a_ids": [i for i, a in zip(sweep.included_ids, in_a,
                                                                      strict=True) if a]},
    }  # fmt: skip
    if min(halves.values()) < MINIMUMS["sharpness_half"]:
        reason = (
            f"halves of {halves} pairs; the pre-registered minimum is {MINIMUMS['sharpness_half']}"
        )
        claim_record.set(statistic=claim["statistic"], n_used=ratio.n, **halves)
        claim_record.write("C1-sharp", model_name, family, evidence | halves | {"reason": reason})
        claim_record.inconclusive(reason)
    result = cross_fitted_sharpness(
        ratio, layers, in_a, rng=_rng("C1-sharp", model_name, family, "sharpness"),
        n_resamples=_resamples(profile),
    )  # fmt: skip
    observed = result.get("min_lower_bound")
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=None if observed is None else round(observed, 4),
        L_star_half_a=result.get("L_star"),
        closest_layer=result.get("closest_layer"),
        n_used=ratio.n,
        **halves,
        **_caveat(curve.mean),
    )
    claim_record.write("C1-sharp", model_name, family, evidence | result)
    plot_layer_claim(
        claim_record.plot_path("C1-sharp", model_name, family),
        curve,
        title=(
            f"C1-sharp {model_name} {family}: L* = {result.get('L_star')} (half A), "
            f"min lower bound on B = {observed if observed is None else round(observed, 3)}"
        ),
        region=[result["L_star"]] if result.get("L_star") else None,
        per_stimulus=sweep.included_effects(),
    )
    if result["sharp"] is None:
        claim_record.inconclusive(result["reason"])
    assert observed > claim["threshold"], (
        f"C1-sharp not supported on {model_name}/{family}: L* = {result['L_star']} chosen on "
        f"half A (n = {halves['n_a']}); on half B (n = {halves['n_b']}) the simultaneous 95% "
        f"lower bound of E(L*) - E(L{result['closest_layer']}) is {observed:.3f}, not > "
        f"{claim['threshold']}"
    )


@pytest.mark.claim("C2")
@pytest.mark.parametrize(("model_name", "family"), _params(MODELS))
def test_c2_correlational_and_causal_agree(model_name, family, e1, profile, claim_record):
    """C2 (E1 step 5): "Correlational (CKA, norms) and causal methods agree". Supported iff
    P_boot(|L_c - L*| <= 1) >= 0.9 and P_boot(|L_n - L*| <= 1) >= 0.9 (joint bootstrap).
    """
    _minimum_met(e1, "C2", model_name, family, profile, claim_record)
    claim = CLAIMS["C2"]
    sweep = e1.sweeps[claim["site"]]
    keep = sweep.included
    ratio, layers = sweep.ratio(), sweep.layers
    cka, norm = e1.profiles.cka[keep], e1.profiles.norm_ratio[keep]
    result = correlational_agreement(
        ratio, cka, norm, layers, rng=_rng("C2", model_name, family, "agreement"),
        n_resamples=_resamples(profile),
    )  # fmt: skip
    observed = min(result["p_cka"], result["p_norm"])
    values = ratio.value()
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(observed, 4),
        p_cka=round(result["p_cka"], 4),
        p_norm=round(result["p_norm"], 4),
        L_c=result["L_c_observed"],
        L_n=result["L_n_observed"],
        n_used=ratio.n,
        **_caveat(values),
    )
    claim_record.write(
        "C2",
        model_name,
        family,
        _base_evidence(e1, "C2", profile)
        | {
            "p_cka": result["p_cka"],
            "p_norm": result["p_norm"],
            "threshold": claim["threshold"],
            "L_c": result["L_c_observed"],
            "L_n": result["L_n_observed"],
            "L_star": int(layers[int(np.argmax(values))]),
            "E": values.tolist(),
            "one_minus_cka_mean": (1 - cka.mean(axis=0)).tolist(),
            "norm_ratio_mean": norm.mean(axis=0).tolist(),
            "definition": claim["definition"],
        },
    )
    plot_profiles(
        claim_record.plot_path("C2", model_name, family),
        layers,
        values,
        1 - cka.mean(axis=0),
        norm.mean(axis=0),
        title=(
            f"C2 {model_name} {family}: P(|Lc-L*|<=1) = {result['p_cka']:.3f}, "
            f"P(|Ln-L*|<=1) = {result['p_norm']:.3f}"
        ),
    )
    assert observed >= claim["threshold"], (
        f"C2 not supported on {model_name}/{family}: P(|L_c - L*| <= 1) = {result['p_cka']:.3f}, "
        f"P(|L_n - L*| <= 1) = {result['p_norm']:.3f}; min < {claim['threshold']} "
        f"(L_c = {result['L_c_observed']}, L_n = {result['L_n_observed']})"
    )


@pytest.mark.secondary("secondary-sites")
@pytest.mark.parametrize(("model_name", "family"), _params(MODELS))
def test_secondary_sites_and_sanity_checks(model_name, family, e1, profile, claim_record):
    """Reported, not a verdict: E(l) of encoder.mlp_out and encoder.block_write (full
    profile only), and two sanity checks of the machinery, which ERROR when they fail:
    the whole-residual patch reproduces the clean metric at every layer (degenerate), and
    the base run patched into itself reproduces the base metric exactly (null); both on
    the first [sanity].null_check_stimuli pairs."""
    secondary = PREREG["secondary"]
    worst = e1.degenerate_deviation
    if worst > secondary["degenerate_tolerance_nats"]:
        raise RuntimeError(
            f"machinery broken: whole-residual patching moved the metric {worst:.2e} nats "
            "away from the clean run's"
        )
    null_worst = max(e1.null_deviation.values())
    if null_worst > PREREG["sanity"]["null_tolerance_nats"]:
        raise RuntimeError(
            f"machinery broken: patching the base run into itself moved the metric by "
            f"{null_worst:.2e} nats ({e1.null_deviation})"
        )
    curves = {}
    computed = [s for s in secondary["sites"] if s in e1.sweeps]
    for site in (PREREG["claims"]["C1"]["site"], *computed):
        if not e1.sweeps[site].included.any():
            continue
        curves[site] = bootstrap_curve(
            e1.sweeps[site].ratio(), e1.sweeps[site].layers,
            rng=_rng("secondary", model_name, family, site), n_resamples=_resamples(profile),
        )  # fmt: skip
    claim_record.set(
        statistic="degenerate check max |m_patched - m_clean|; null check max "
        "|m_patched - m_base| (nats)",
        threshold=[
            secondary["degenerate_tolerance_nats"],
            PREREG["sanity"]["null_tolerance_nats"],
        ],
        observed=[float(f"{worst:.3g}"), float(f"{null_worst:.3g}")],
    )
    claim_record.write(
        "secondary-sites",
        model_name,
        family,
        {
            "curves": {site: c.to_records() for site, c in curves.items()},
            "degenerate_check_max_abs_nats": worst,
            "null_check_max_abs_nats": e1.null_deviation,
            "null_check_stimuli": PREREG["sanity"]["null_check_stimuli"],
            "n_used": {site: int(e1.sweeps[site].included.sum()) for site in curves},
            "stimulus_manifest_sha256": e1.pairs.manifest_sha256,
            "versions": environment(),
            "timings_s": e1.timings,
        },
    )
    main = curves.pop(PREREG["claims"]["C1"]["site"], None)
    if main is not None:
        plot_layer_claim(
            claim_record.plot_path("secondary-sites", model_name, family),
            main,
            title=f"sites compared, {model_name} {family}",
            extra_curves=curves,
            reference_line=0.0,
        )


@pytest.mark.secondary("exploratory")
@pytest.mark.parametrize(
    ("model_name", "family"),
    [pytest.param(m, f, id=f"{m}-{f}") for m in MODELS for f in PREREG.get("exploratory", {})],
)
def test_exploratory_unaligned_family(model_name, family, exploratory_sweep, profile, claim_record):
    """Reported, not a verdict: E(l) on an exploratory family whose clean and corrupt
    audio are not time-aligned (joe vs flite slt: frames of different speech are
    spliced), next to the claims' aligned voice family for comparison."""
    sweep, pairs = exploratory_sweep
    spec = PREREG["exploratory"][family]
    lengths = [p.corrupt.audio.size / p.clean.audio.size for p in pairs]
    caveat = (
        f"not time-aligned: corrupt/clean length ratio {min(lengths):.2f} to {max(lengths):.2f}; "
        "frame-by-frame patching splices frames of different speech (exploratory)"
    )
    n_used = int(sweep.included.sum())
    curve = None
    if n_used:
        curve = bootstrap_curve(
            sweep.ratio(), sweep.layers, rng=_rng("exploratory", model_name, family, "curve"),
            n_resamples=_resamples(profile),
        )  # fmt: skip
    claim_record.set(
        statistic="E(l) per layer (reported)",
        observed=None if curve is None else [round(float(x), 3) for x in curve.mean],
        n_used=n_used,
        caveat=caveat,
    )
    claim_record.write(
        "exploratory",
        model_name,
        family,
        {
            "description": spec["description"],
            "site": spec["site"],
            "caveat": caveat,
            "curve": None if curve is None else curve.to_records(),
            "n_pairs": len(sweep.ids),
            "n_used": n_used,
            "length_ratios": lengths,
            "stimulus_manifest_sha256": pairs.manifest_sha256,
            "versions": environment(),
        },
    )
    if curve is not None:
        plot_layer_claim(
            claim_record.plot_path("exploratory", model_name, family),
            curve,
            title=f"exploratory {family}, {model_name}: {spec['site']} (not aligned)",
            per_stimulus=sweep.included_effects(),
            reference_line=0.0,
        )
