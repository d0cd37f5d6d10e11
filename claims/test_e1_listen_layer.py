"""E1 / E1b: where in the Whisper encoder is the audio consulted?

Each test is one pre-registered claim from "Localizing the Listen Layer in Speech
LLMs" on one (model, stimulus family). Thresholds come from preregistration.toml.
Denoising activation patching (Heimersheim & Nanda 2024): restore the clean run's
encoder attention output at one layer into the corrupt run, and measure the
recovery of the clean run's greedy transcript log-prob.
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
    paired_peak_difference,
    peak_location,
    probability_in,
)

PREREG = preregistration()
COMMON = PREREG["common"]
CLAIMS = PREREG["claims"]
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
    return claim_rng(COMMON["seed"], *keys)


def _base_evidence(e1, claim_id: str, profile: str) -> dict:
    sweep = e1.sweeps[CLAIMS[claim_id]["site"]]
    return {
        "statement": CLAIMS[claim_id]["statement"],
        "source": CLAIMS[claim_id]["source"],
        "site": sweep.site.to_dict(),
        "metric": COMMON["metric"],
        "reference": COMMON["reference"],
        "mode": COMMON["mode"],
        "exclusion_floor_nats": sweep.floor,
        "n_pairs": len(sweep.ids),
        "n_used": int(sweep.included.sum()),
        "n_excluded": len(sweep.excluded_ids),
        "excluded_ids": list(sweep.excluded_ids),
        "bootstrap_resamples": _resamples(profile),
        "seed": COMMON["seed"],
        "stimulus_manifest_sha256": e1.pairs.manifest_sha256,
        "stimulus_params": dict(e1.pairs.params) | {"texts": f"{len(e1.pairs)} from text bank v1"},
        "versions": environment(),
        "timings_s": e1.timings,
    }


def _caveat(effects: np.ndarray) -> dict:
    """A ledger note when no layer recovers anything: then L* is not a peak."""
    means = effects.mean(axis=0)
    if means.size and means.max() < 0:
        return {
            "caveat": f"the mean recovery is below 0 at every layer (at most {means.max():.2f}): "
            "every single-layer patch lowers the clean transcript's log-prob, so L* marks "
            "the least harmful layer, not a peak"
        }
    return {}


def _curve_evidence(effects, layers, rng, n_resamples):
    curve = bootstrap_curve(effects, layers, rng=rng, n_resamples=n_resamples)
    return curve, curve.to_records()


def _peak_region_claim(claim_id, region, label, model_name, family, e1, profile, claim_record):
    """Shared body of C1 and C1-named: P_boot(L* in region) against the threshold."""
    __tracebackhide__ = True
    claim = CLAIMS[claim_id]
    sweep = e1.sweeps[claim["site"]]
    effects, layers = sweep.included_effects(), sweep.layers
    rng = _rng(claim_id, model_name, family)
    curve, records = _curve_evidence(effects, layers, rng, _resamples(profile))
    peak = peak_location(effects, layers, rng=rng, n_resamples=_resamples(profile))
    p = probability_in(peak["samples"], region)
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(p, 4),
        L_star=peak["observed"],
        region=region,
        n_used=len(effects),
        **_caveat(effects),
    )
    distribution = {str(x): float(np.mean(peak["samples"] == x)) for x in layers}
    claim_record.write(
        claim_id,
        model_name,
        family,
        _base_evidence(e1, claim_id, profile)
        | {
            "curve": records,
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
    )
    assert p >= claim["threshold"], (
        f"{claim_id} not supported on {model_name}/{family}: P_boot({label}) = {p:.3f} "
        f"< {claim['threshold']} (L* = {peak['observed']} of {len(layers)}, n = {len(effects)})"
    )


@pytest.mark.claim("C1")
@pytest.mark.parametrize(("model_name", "family"), _params(MODELS))
def test_c1_causal_peak_at_half_depth(model_name, family, e1, profile, claim_record):
    """C1 (Phase 1, E1): "A sharp causal peak at ~50% depth of the Whisper encoder".

    Supported iff P_boot(L*/N in [1/3, 2/3]) >= 0.95, L* = argmax of the mean
    recovery curve of encoder.attn_out.
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
    """C1-sharp (Phase 1, E1): "The peak is sharp". Supported iff the paired bootstrap
    95% CI of E(L*) - E(runner-up layer) has lower bound > 0.
    """
    claim = CLAIMS["C1-sharp"]
    sweep = e1.sweeps[claim["site"]]
    effects, layers = sweep.included_effects(), sweep.layers
    rng = _rng("C1-sharp", model_name, family)
    curve, records = _curve_evidence(effects, layers, rng, _resamples(profile))
    result = paired_peak_difference(effects, layers, rng=rng, n_resamples=_resamples(profile))
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(result["ci_low"], 4),
        L_star=result["peak_layer"],
        runner_up=result["runner_up_layer"],
        n_used=len(effects),
        **_caveat(effects),
    )
    claim_record.write(
        "C1-sharp",
        model_name,
        family,
        _base_evidence(e1, "C1-sharp", profile) | {"curve": records, **result},
    )
    plot_layer_claim(
        claim_record.plot_path("C1-sharp", model_name, family),
        curve,
        title=(
            f"C1-sharp {model_name} {family}: E(L{result['peak_layer']}) - "
            f"E(L{result['runner_up_layer']}) CI low = {result['ci_low']:.3f}"
        ),
        region=[result["peak_layer"]],
    )
    assert result["ci_low"] > claim["threshold"], (
        f"C1-sharp not supported on {model_name}/{family}: 95% CI of E(L{result['peak_layer']}) - "
        f"E(L{result['runner_up_layer']}) = [{result['ci_low']:.3f}, {result['ci_high']:.3f}], "
        f"lower bound not > {claim['threshold']}"
    )


@pytest.mark.claim("C2")
@pytest.mark.parametrize(("model_name", "family"), _params(MODELS))
def test_c2_correlational_and_causal_agree(model_name, family, e1, profile, claim_record):
    """C2 (E1 step 5): "Correlational (CKA, norms) and causal methods agree". Supported iff
    P_boot(|L_c - L*| <= 1) >= 0.9 and P_boot(|L_n - L*| <= 1) >= 0.9 (joint bootstrap).
    """
    claim = CLAIMS["C2"]
    sweep = e1.sweeps[claim["site"]]
    keep = sweep.included
    effects, layers = sweep.effects[keep], sweep.layers
    cka, ratio = e1.profiles.cka[keep], e1.profiles.norm_ratio[keep]
    rng = _rng("C2", model_name, family)
    result = correlational_agreement(
        effects, cka, ratio, layers, rng=rng, n_resamples=_resamples(profile)
    )
    observed = min(result["p_cka"], result["p_norm"])
    claim_record.set(
        statistic=claim["statistic"],
        threshold=claim["threshold"],
        observed=round(observed, 4),
        p_cka=round(result["p_cka"], 4),
        p_norm=round(result["p_norm"], 4),
        L_c=result["L_c_observed"],
        L_n=result["L_n_observed"],
        n_used=len(effects),
        **_caveat(effects),
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
            "L_star": int(layers[int(np.argmax(effects.mean(axis=0)))]),
            "one_minus_cka_mean": (1 - cka.mean(axis=0)).tolist(),
            "norm_ratio_mean": ratio.mean(axis=0).tolist(),
            "definition": claim["definition"],
        },
    )
    plot_profiles(
        claim_record.plot_path("C2", model_name, family),
        layers,
        effects.mean(axis=0),
        1 - cka.mean(axis=0),
        ratio.mean(axis=0),
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
def test_secondary_sites_and_degenerate_check(model_name, family, e1, profile, claim_record):
    """Reported, not a verdict: recovery curves of encoder.mlp_out and encoder.block_write
    (full profile only); and the whole-residual curve, which must be 1.0 at every layer
    (else the machinery is broken and this test ERRORS)."""
    secondary = PREREG["secondary"]
    resid = e1.sweeps[secondary["degenerate_site"]].included_effects()
    worst = float(np.abs(resid - 1.0).max()) if resid.size else 0.0
    if worst > secondary["degenerate_tolerance"]:
        raise RuntimeError(
            f"machinery broken: whole-residual patching recovered {worst:.2e} away from 1.0"
        )
    rng = _rng("secondary", model_name, family)
    curves = {}
    computed = [s for s in secondary["sites"] if s in e1.sweeps]
    for site in (PREREG["claims"]["C1"]["site"], *computed):
        effects = e1.sweeps[site].included_effects()
        curves[site] = bootstrap_curve(
            effects, e1.sweeps[site].layers, rng=rng, n_resamples=_resamples(profile)
        )
    claim_record.set(
        statistic="degenerate-site max |r - 1|",
        threshold=secondary["degenerate_tolerance"],
        observed=float(f"{worst:.3g}"),
    )
    claim_record.write(
        "secondary-sites",
        model_name,
        family,
        {
            "curves": {site: c.to_records() for site, c in curves.items()},
            "degenerate_max_abs_deviation": worst,
            "n_used": {site: int(e1.sweeps[site].included.sum()) for site in curves},
            "stimulus_manifest_sha256": e1.pairs.manifest_sha256,
            "versions": environment(),
            "timings_s": e1.timings,
        },
    )
    main = curves.pop(PREREG["claims"]["C1"]["site"])
    plot_layer_claim(
        claim_record.plot_path("secondary-sites", model_name, family),
        main,
        title=f"sites compared, {model_name} {family}",
        extra_curves=curves,
        reference_line=0.0,
    )
