"""E4: which attention heads are the listen heads? ("top-5 listen heads at L*")

Each test is one pre-registered claim (``[e4]`` in preregistration.toml) on one
(model, family). Single-head denoising effects ``E(l, h)`` (ratio of means over the
pairs past the signed floor) rank the heads on half A of the pairs; every test runs
on half B (split by a hash of the pair id). The p-value claims are judged after Holm
across their cells, in the ledger.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.stimuli import preregistration
from listenkit.analyses.heads import top_heads
from listenkit.models.alignment_heads import alignment_heads
from listenkit.report.evidence import environment
from listenkit.report.head_plots import plot_head_claim
from listenkit.stats import hypergeometric_overlap

PREREG = preregistration()
E4 = PREREG["e4"]
CLAIMS = E4["claims"]
MODELS = E4["models"]["full"]


def _params():
    return [pytest.param(m, E4["family"], id=f"{m}-{E4['family']}") for m in MODELS]


def _p_value_record(claim_id: str, p: float, claim_record, **extra) -> None:
    claim_record.set(
        statistic=CLAIMS[claim_id]["statistic"],
        threshold=CLAIMS[claim_id]["threshold"],
        observed=round(p, 6),
        p_raw=round(p, 6),
        multiplicity=PREREG["multiplicity"]["method"],
        alpha=E4["alpha"],
        **extra,
    )


def _evidence(e4, claim_id: str, profile: str) -> dict:
    return {
        "statement": CLAIMS[claim_id]["statement"],
        "source": CLAIMS[claim_id]["source"],
        "preregistration_version": PREREG["version"],
        "definitions": {k: E4[k] for k in ("encoder_site", "decoder_site", "layer_site", "split")},
        "n_pairs": len(e4.encoder.ids),
        "n_used": int(e4.encoder.included.sum()),
        **e4.halves,
        "half_a_ids": [i for i, a in zip(e4.encoder.included_ids, e4.in_a, strict=True) if a],
        "encoder_effects_all": e4.encoder.effects().tolist(),
        "encoder_effects_half_a": e4.encoder.effects(e4.in_a).tolist()
        if e4.halves["n_a"]
        else None,
        "top_heads_half_a": [list(h) for h in e4.top],
        "random_sets": [[list(h) for h in s] for s in e4.random_sets],
        "profile_random_sets": E4["random_sets"][profile],
        "stimulus_manifest_sha256": e4.pairs.manifest_sha256,
        "versions": environment(),
        "timings_s": e4.timings,
    }


def _halves_or_inconclusive(e4, claim_id, profile, claim_record) -> None:
    __tracebackhide__ = True
    if min(e4.halves.values()) < E4["min_half"]:
        reason = f"halves of {e4.halves} pairs; the pre-registered minimum is {E4['min_half']}"
        claim_record.set(statistic=CLAIMS[claim_id]["statistic"], **e4.halves)
        claim_record.write(
            claim_id,
            e4.model_name,
            e4.family,
            _evidence(e4, claim_id, profile) | {"reason": reason},
        )
        claim_record.inconclusive(reason)


def _set_claim(claim_id, key, model_name, family, e4, profile, claim_record):
    __tracebackhide__ = True
    _halves_or_inconclusive(e4, claim_id, profile, claim_record)
    result = getattr(e4, key)
    _p_value_record(
        claim_id,
        result["p_value"],
        claim_record,
        top_heads=[list(h) for h in e4.top],
        chosen_value=round(result["observed"], 4),
        R=result["R"],
        **e4.halves,
    )
    evidence = _evidence(e4, claim_id, profile) | {key: result}
    claim_record.write(claim_id, model_name, family, evidence)
    plot_head_claim(claim_record.plot_path(claim_id, model_name, family), claim_id,
                    f"{model_name} {family}", evidence)  # fmt: skip
    assert result["p_value"] < CLAIMS[claim_id]["threshold"], (
        f"{claim_id} not supported on {model_name}/{family} before Holm: rank p = "
        f"{result['p_value']:.3f} (top-5 {result['observed']:.3f} vs random-set median "
        f"{np.median(result['null']):.3f}, R = {result['R']})"
    )


@pytest.mark.claim("C6-sufficient")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c6_top_heads_are_sufficient(model_name, family, e4, profile, claim_record):
    """C6-sufficient (E4): the top-5 encoder heads (ranked on half A), patched together on
    half B, recover more than random 5-head sets: rank p (R random sets), Holm < 0.05."""
    _set_claim("C6-sufficient", "recovery", model_name, family, e4, profile, claim_record)


@pytest.mark.claim("C6-necessary")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c6_top_heads_are_necessary(model_name, family, e4, profile, claim_record):
    """C6-necessary (E4): mean-ablating the top-5 heads in the clean runs of half B lowers
    the clean metric more than random 5-head sets: rank p, Holm < 0.05."""
    _set_claim("C6-necessary", "knockout", model_name, family, e4, profile, claim_record)


@pytest.mark.claim("C6-at-peak")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c6_top_heads_lie_at_the_listen_layer(model_name, family, e4, profile, claim_record):
    """C6-at-peak (E4): "top-5 listen heads at L*": the number of top-5 heads in layer L*
    (E1's argmax of encoder.attn_out on half A) against the hypergeometric null."""
    claim_id = "C6-at-peak"
    _halves_or_inconclusive(e4, claim_id, profile, claim_record)
    k = E4["top_k"]
    at_peak = sum(1 for layer, _ in e4.top if layer == e4.l_star_a)
    p = hypergeometric_overlap(at_peak, e4.n_layers * e4.n_heads, e4.n_heads, k)
    _p_value_record(claim_id, p, claim_record, L_star_half_a=e4.l_star_a, top_at_L_star=at_peak,
                    top_heads=[list(h) for h in e4.top], **e4.halves)  # fmt: skip
    evidence = _evidence(e4, claim_id, profile) | {
        "L_star_half_a": e4.l_star_a, "top_at_L_star": at_peak, "p_value": p,
    }  # fmt: skip
    claim_record.write(claim_id, model_name, family, evidence)
    plot_head_claim(claim_record.plot_path(claim_id, model_name, family), claim_id,
                    f"{model_name} {family}", evidence)  # fmt: skip
    assert p < CLAIMS[claim_id]["threshold"], (
        f"{claim_id} not supported on {model_name}/{family} before Holm: {at_peak} of the "
        f"top-{k} heads lie at L* = {e4.l_star_a}; hypergeometric p = {p:.3f}"
    )


@pytest.mark.claim("C6-alignment")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c6_decoder_listen_heads_overlap_alignment_heads(
    model_name, family, e4, profile, claim_record
):
    """C6-alignment (E4): the top-k decoder cross-attention heads (ranked on half A by their
    single-head denoising effect), k = the number of OpenAI's alignment heads for this
    checkpoint, overlap those more than chance: hypergeometric p, Holm < 0.05."""
    claim_id = "C6-alignment"
    _halves_or_inconclusive(e4, claim_id, profile, claim_record)
    n_heads = e4.decoder.patched.shape[2]
    reference = alignment_heads(model_name, e4.n_decoder_layers, n_heads)
    k = len(reference)
    effects = e4.decoder.effects(e4.in_a)
    top = top_heads(effects, k)
    overlap = sorted(set(top) & set(reference))
    p = hypergeometric_overlap(len(overlap), e4.n_decoder_layers * n_heads, k, k)
    _p_value_record(claim_id, p, claim_record, k=k, overlap=len(overlap),
                    overlap_heads=[list(h) for h in overlap], **e4.halves)  # fmt: skip
    evidence = _evidence(e4, claim_id, profile) | {
        "decoder_effects_half_a": effects.tolist(), "alignment_heads": reference,
        "top_decoder_heads_half_a": top, "overlap": overlap, "p_value": p,
    }  # fmt: skip
    claim_record.write(claim_id, model_name, family, evidence)
    plot_head_claim(claim_record.plot_path(claim_id, model_name, family), claim_id,
                    f"{model_name} {family}", evidence)  # fmt: skip
    assert p < CLAIMS[claim_id]["threshold"], (
        f"{claim_id} not supported on {model_name}/{family} before Holm: {len(overlap)} of the "
        f"top-{k} decoder cross-attention heads are alignment heads; hypergeometric p = {p:.3f}"
    )
