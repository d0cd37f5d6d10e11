"""E3: does the Listen Layer shift deeper after LoRA adaptation? (claim C4)

Each test is the pre-registered claim (``[e3]`` in preregistration.toml) on one
(model, family): the same evaluation pairs are swept through the model before and
after adaptation (``fixtures.adaptation``); the centre of mass of the positive part
of the recovery curve, ``CoM = sum l max(E(l), 0) / (N sum max(E(l), 0))``, moves by
``Delta = CoM_after - CoM_before``; supported iff ``P_boot(Delta > 0) >= 0.95``
(paired bootstrap over sentences for ser-prosody, over pairs for asr-noise). A cell
whose adaptation did not work (the pre-registered success criterion) is inconclusive.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.stimuli import claim_rng, preregistration
from listenkit.report.evidence import environment
from listenkit.report.plots import plot_shift
from listenkit.stats import RatioOfMeans, bootstrap_curve, paired_shift

PREREG = preregistration()
E3 = PREREG["e3"]
CLAIM = E3["claims"]["C4"]
MODELS = E3["models"]["full"]


def _params():
    return [
        pytest.param(m, family, id=f"{m}-{family}") for m in MODELS for family in E3["families"]
    ]


def _evidence(e3, profile: str, n_used: int) -> dict:
    spec = E3["families"][e3.family]
    return {
        "statement": CLAIM["statement"],
        "source": CLAIM["source"],
        "preregistration_version": PREREG["version"],
        "family": spec["description"],
        "metric": spec["metric"],
        "site": E3["site"],
        "recipe": spec["recipe"],
        "lora": E3["lora"],
        "n_pairs": len(e3.ids),
        "n_used": n_used,
        "floor": e3.floor,
        "adaptation_success": e3.success,
        "training": e3.training,
        "secondary": e3.secondary,
        "before": {k: np.asarray(v).tolist() for k, v in e3.before.items()},
        "after": {k: np.asarray(v).tolist() for k, v in e3.after.items()},
        "ids": e3.ids,
        "clusters": e3.clusters,
        "stimulus_manifests_sha256": e3.manifests,
        "profile_sentences": spec["sentences"][profile],
        "versions": environment(),
        "timings_s": e3.timings,
    }


def _ratio(arrays: dict, rows: np.ndarray) -> RatioOfMeans:
    num = arrays["patched"][rows] - arrays["base"][rows, None]
    return RatioOfMeans(num, (arrays["source"] - arrays["base"])[rows])


@pytest.mark.claim("C4")
@pytest.mark.parametrize(("model_name", "family"), _params())
def test_c4_listen_layer_shifts_deeper_after_lora(model_name, family, e3, profile, claim_record):
    """C4 (E3): after LoRA adaptation the recovery curve's centre of mass moves deeper:
    P_boot(CoM_after - CoM_before > 0) >= 0.95 on the same held-out pairs."""
    __tracebackhide__ = True
    claim_id = "C4"
    rows = e3.included()
    n_used = int(rows.sum())
    evidence = _evidence(e3, profile, n_used)
    claim_record.set(statistic=CLAIM["statistic"], threshold=CLAIM["threshold"], n_used=n_used,
                     adaptation_passed=bool(e3.success["passed"]))  # fmt: skip
    reason = None
    if not e3.success["passed"]:
        reason = f"adaptation did not meet its pre-registered criterion: {e3.success}"
    elif n_used < E3["min_used"]:
        reason = f"{n_used} pairs past the floor in both models; the minimum is {E3['min_used']}"
    if reason is not None:
        claim_record.write(claim_id, model_name, family, evidence | {"reason": reason})
        claim_record.inconclusive(reason)
    n_resamples = E3["bootstrap_resamples"][profile]
    clusters = [c for c, keep in zip(e3.clusters, rows, strict=True) if keep]
    before, after = _ratio(e3.before, rows), _ratio(e3.after, rows)
    shift = paired_shift(
        before, after, clusters=clusters, n_resamples=n_resamples,
        rng=claim_rng(E3["seed"], claim_id, model_name, family, "paired-bootstrap"),
    )  # fmt: skip
    layers = e3.before["layers"]
    curves = {
        name: bootstrap_curve(ratio, layers, n_resamples=n_resamples,
                              rng=claim_rng(E3["seed"], claim_id, model_name, family, name))
        for name, ratio in (("before", before), ("after", after))
    }  # fmt: skip
    claim_record.set(
        observed=round(shift.p_delta_positive, 4),
        delta=round(shift.delta, 4),
        com_before=round(shift.com_before, 4),
        com_after=round(shift.com_after, 4),
        L_star_before=shift.l_star_before,
        L_star_after=shift.l_star_after,
        p_L_star_later=round(shift.p_l_star_later, 4),
    )
    claim_record.write(
        claim_id, model_name, family,
        evidence | {"shift": shift.to_dict(),
                    "curves": {k: c.to_records() for k, c in curves.items()}},
    )  # fmt: skip
    plot_shift(
        claim_record.plot_path(claim_id, model_name, family),
        curves["before"],
        curves["after"],
        delta_samples=shift.delta_samples,
        training={k: v for k, v in e3.training.items() if v.get("loss")},
        title=f"C4 {model_name} {family}: E(l) before vs after LoRA; CoM {shift.com_before:.3f}"
        f" -> {shift.com_after:.3f}, L* {shift.l_star_before} -> {shift.l_star_after}",
        ylabel="normalised recovery (ratio of means)",
        secondary=e3.secondary,
    )
    assert shift.p_delta_positive >= CLAIM["threshold"], (
        f"C4 not supported on {model_name}/{family}: P_boot(Delta > 0) = "
        f"{shift.p_delta_positive:.3f} < {CLAIM['threshold']} (Delta = {shift.delta:+.3f}; "
        f"L* {shift.l_star_before} -> {shift.l_star_after}; n = {n_used} pairs in "
        f"{shift.n_clusters} clusters)"
    )
