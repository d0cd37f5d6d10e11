"""E3: does the Listen Layer shift deeper after LoRA adaptation? (claim C4)

``analyse`` trains (or loads) the adapters, checks the adaptation worked, and sweeps
before and after on the same evaluation pairs:

- ``ser-prosody``: before = frozen encoder + a head trained by the recipe; after =
  LoRA + head trained jointly; metric = the head's logit difference (class c minus
  neutral); clusters = sentences.
- ``asr-noise``: before = the model; after = the model with its LoRA (ASR loss on 0 dB
  noisy training sentences) merged; the C1 sweep (``ref_logprob`` of the clean audio's
  greedy transcript under the same model); clusters = pairs.

Adapters are cached (``listenkit.analyses.adaptation.adapter_store``); the analysis
too (``AnalysisCache``), so a rerun trains and sweeps nothing. ``shift`` is C4's
statistic: the centre of mass of the positive part of the recovery curve,
``CoM = sum l max(E(l), 0) / (N sum max(E(l), 0))``, moves by
``Delta = CoM_after - CoM_before``; ``P_boot(Delta > 0)`` by a paired cluster bootstrap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import listenkit
from listenkit.analyses.adaptation.adapter_store import Trained, adapter_key, cached_training
from listenkit.analyses.adaptation.lora import LoraSpec
from listenkit.analyses.adaptation.readout import (
    layer_contributions,
    logit_lens_accuracy,
    readout_sweep,
)
from listenkit.analyses.adaptation.training import (
    Recipe,
    accuracy_of,
    adapted,
    corpus_wer,
    train_asr,
    train_prosody,
)
from listenkit.experiments.cache import AnalysisCache, weights_sha256
from listenkit.experiments.measured import Measured, Requirement
from listenkit.experiments.progress import reporter
from listenkit.models.speech_model import SpeechModel
from listenkit.report.plots import plot_shift
from listenkit.stats import RatioOfMeans, bootstrap_curve, paired_shift
from listenkit.stimuli.pairs import noise_pairs
from listenkit.stimuli.prosody_set import PROSODY_LABELS, prosody_pairs, prosody_utterances
from listenkit.stimuli.textbank import split_textbank

__all__ = ["E3Analysis", "analyse", "sentences", "shift"]


@dataclass
class E3Analysis:
    """Raw results of one cell; arrays are per evaluation pair (same order before/after)."""

    model_name: str
    family: str
    n_layers: int
    ids: list[str]
    clusters: list[str]
    before: dict  # source, base, patched [n, layers]
    after: dict
    floor: float
    success: dict  # the pre-registered adaptation criterion, measured
    training: dict  # logs (after; and the frozen probe's for ser-prosody)
    secondary: dict  # layer contributions, logit lens (before / after)
    manifests: dict  # sha256 of the training and evaluation stimulus manifests
    timings: dict[str, float] = field(default_factory=dict)

    def included(self) -> np.ndarray:
        """Pairs past the signed floor in *both* models."""
        gap_b = self.before["source"] - self.before["base"]
        gap_a = self.after["source"] - self.after["base"]
        return (gap_b >= self.floor) & (gap_a >= self.floor)


def sentences(
    section: Mapping[str, Any], spec: Mapping[str, Any], profile: str
) -> dict[str, tuple[str, ...]]:
    """The pre-registered disjoint train / validation / eval sentences of a family."""
    split = split_textbank(
        section["split"]["salt"],
        eval_below=section["split"]["eval_below"],
        validation_below=section["split"]["validation_below"],
    )
    sizes = spec["sentences"][profile]
    return {part: split[part][: sizes[part]] for part in ("train", "validation", "eval")}


def _recipe(spec: dict, profile: str) -> Recipe:
    r = spec["recipe"]
    return Recipe(
        lr=r["lr"],
        head_lr=r.get("head_lr", 0.0),
        steps=r["steps"][profile],
        batch_size=r["batch_size"],
        seed=r["seed"],
        eval_every=r["eval_every"],
        schedule=r["schedule"],
    )


def _lora(section: Mapping[str, Any]) -> LoraSpec:
    spec = section["lora"]
    return LoraSpec(
        r=spec["r"], alpha=spec["alpha"], target=spec["target"], dropout=spec["dropout"]
    )


def _train_key(model, section, manifest: str, recipe: Recipe, family: str, variant: str) -> str:
    lora = _lora(section).to_dict() if variant != "frozen" else None
    parts = {"recipe": recipe.to_dict(), "lora": lora, "family": family, "variant": variant}
    return adapter_key(weights_sha256(model.module), manifest, parts)


def _ser(model, model_name: str, profile: str, e3, spec) -> E3Analysis:
    texts = sentences(e3, spec, profile)
    sets = {
        part: prosody_utterances(texts[part], voice=spec["voice"], rms=spec["rms"])
        for part in texts
    }
    train, val, held_out = (list(sets[p]) for p in ("train", "validation", "eval"))
    recipe, n_classes = _recipe(spec, profile), len(PROSODY_LABELS)
    label = f"E3 {model_name} ser-prosody"
    start = time.perf_counter()
    trained: dict[str, Trained] = {}
    for variant, lora in (("frozen", None), ("lora", _lora(e3))):

        def run(lora=lora, variant=variant):
            encoder, head, log = train_prosody(
                model,
                train,
                val,
                recipe,
                n_classes=n_classes,
                lora=lora,
                progress=reporter(f"{label} training ({variant})", "steps"),
            )
            return Trained(encoder, head, log)

        key = _train_key(model, e3, sets["train"].manifest_sha256, recipe, "ser-prosody", variant)
        trained[variant] = cached_training(
            f"{model_name}-ser-prosody-{variant}", key, model, run, n_classes=n_classes
        )
    train_s = time.perf_counter() - start
    after_model = adapted(model, trained["lora"].peft_encoder, "ser-prosody")
    models = {
        "before": (model, trained["frozen"].head),
        "after": (after_model, trained["lora"].head),
    }
    acc = {k: accuracy_of(m, h, held_out) for k, (m, h) in models.items()}
    pairs = prosody_pairs(held_out)
    start = time.perf_counter()
    sweeps = {
        k: readout_sweep(
            m, h, pairs, site=e3["site"], progress=reporter(f"{label} sweep ({k})", "pairs")
        )
        for k, (m, h) in models.items()
    }
    sweep_s = time.perf_counter() - start
    audio = [u.audio for u in held_out]
    secondary = {
        "layer_contributions": {k: layer_contributions(m, audio) for k, (m, _) in models.items()},
        "logit_lens_accuracy": {
            k: logit_lens_accuracy(m, h, held_out) for k, (m, h) in models.items()
        },
    }
    return E3Analysis(
        model_name=model_name,
        family="ser-prosody",
        n_layers=model.encoder_layers,
        ids=[p.id for p in pairs],
        clusters=[f"sentence-{p.meta['sentence']}" for p in pairs],
        before=_arrays(sweeps["before"]),
        after=_arrays(sweeps["after"]),
        floor=spec["exclusion_floor"],
        success={
            "criterion": f"held-out accuracy after >= {spec['success_accuracy']}",
            "accuracy_before_frozen_probe": acc["before"],
            "accuracy_after": acc["after"],
            "passed": acc["after"] >= spec["success_accuracy"],
        },
        training={k: t.log.to_dict() | {"from_cache": t.from_cache} for k, t in trained.items()},
        secondary=secondary,
        manifests={p: s.manifest_sha256 for p, s in sets.items()},
        timings={"train_s": round(train_s, 1), "sweeps_s": round(sweep_s, 1)},
    )


def _arrays(sweep) -> dict:
    return {
        "source": np.asarray(sweep.source),
        "base": np.asarray(sweep.base),
        "patched": np.asarray(sweep.patched),
        "layers": list(sweep.layers),
    }


def _asr(model, model_name: str, profile: str, e3, spec) -> E3Analysis:
    texts = sentences(e3, spec, profile)
    sets = {
        part: noise_pairs(
            texts[part], spec["snr_db"], spec["noise"], spec["noise_seed"], voice=spec["voice"]
        )
        for part in texts
    }
    train = [p.corrupt for p in sets["train"]]
    val = [p.corrupt for p in sets["validation"]]
    pairs = list(sets["eval"])
    recipe = _recipe(spec, profile)
    label = f"E3 {model_name} asr-noise"
    start = time.perf_counter()

    def run():
        progress = reporter(f"{label} training", "steps")
        encoder, log = train_asr(model, train, val, recipe, lora=_lora(e3), progress=progress)
        return Trained(encoder, None, log)

    key = _train_key(model, e3, sets["train"].manifest_sha256, recipe, "asr-noise", "lora")
    trained = cached_training(f"{model_name}-asr-noise-lora", key, model, run)
    train_s = time.perf_counter() - start
    after_model = adapted(model, trained.peft_encoder, "asr-noise")
    noisy = [p.corrupt for p in pairs]
    wer = {"before": corpus_wer(model, noisy), "after": corpus_wer(after_model, noisy)}
    reduction = (wer["before"] - wer["after"]) / wer["before"] if wer["before"] > 0 else None
    start = time.perf_counter()
    sweeps = {
        k: listenkit.sweep(
            m,
            pairs,
            e3["site"],
            metric=spec["metric"],
            reference=spec["reference"],
            mode="denoise",
            floor=spec["exclusion_floor"],
            progress=reporter(f"{label} sweep ({k})", "pairs"),
        )
        for k, m in (("before", model), ("after", after_model))
    }
    sweep_s = time.perf_counter() - start
    return E3Analysis(
        model_name=model_name,
        family="asr-noise",
        n_layers=model.encoder_layers,
        ids=[p.id for p in pairs],
        clusters=[p.id for p in pairs],
        before=_arrays(sweeps["before"]),
        after=_arrays(sweeps["after"]),
        floor=spec["exclusion_floor"],
        success={
            "criterion": f"held-out WER on {spec['snr_db']:g} dB noise at least "
            f"{spec['success_relative_wer_reduction']:.0%} lower (relative)",
            "wer_before": wer["before"],
            "wer_after": wer["after"],
            "relative_reduction": reduction,
            "passed": reduction is not None and reduction >= spec["success_relative_wer_reduction"],
        },
        training={"lora": trained.log.to_dict() | {"from_cache": trained.from_cache}},
        secondary={
            "layer_contributions": {
                k: layer_contributions(m, [u.audio for u in noisy])
                for k, m in (("before", model), ("after", after_model))
            }
        },
        manifests={p: s.manifest_sha256 for p, s in sets.items()},
        timings={"train_s": round(train_s, 1), "sweeps_s": round(sweep_s, 1)},
    )


def analyse(
    model: SpeechModel,
    section: Mapping[str, Any],
    spec: Mapping[str, Any],
    *,
    family: str,
    profile: str,
    cache: AnalysisCache | None = None,
) -> E3Analysis:
    """Train, check and sweep one (model, family) cell (``family`` is ``ser-prosody``
    or ``asr-noise``; ``spec`` its pre-registered table); cached."""
    run = {"ser-prosody": _ser, "asr-noise": _asr}[family]

    def compute() -> E3Analysis:
        return run(model, model.name, profile, section, spec)

    if cache is None:
        return compute()
    parts = {"weights": weights_sha256(model.module), "stimuli": "e3-" + profile}
    return cache.get("E3", model.name, family, profile, parts, compute)


def adapted_enough(e3: E3Analysis, needed: int, details: Mapping[str, Any]) -> Requirement:
    """The adaptation met its pre-registered criterion and enough pairs pass the floor
    in both models."""
    n_used = int(e3.included().sum())
    reason = ""
    if not e3.success["passed"]:
        reason = f"adaptation did not meet its pre-registered criterion: {e3.success}"
    elif n_used < needed:
        reason = f"{n_used} pairs past the floor in both models; the minimum is {needed}"
    return Requirement(
        ok=not reason,
        reason=reason,
        details=dict(details),
        numbers={"n_used": n_used, "adaptation_passed": bool(e3.success["passed"])},
    )


def _ratio(arrays: dict, rows: np.ndarray) -> RatioOfMeans:
    num = arrays["patched"][rows] - arrays["base"][rows, None]
    return RatioOfMeans(num, (arrays["source"] - arrays["base"])[rows])


def evidence(
    e3: E3Analysis, section: Mapping[str, Any], spec: Mapping[str, Any], profile: str
) -> dict[str, Any]:
    return {
        "family": spec["description"],
        "metric": spec["metric"],
        "site": section["site"],
        "recipe": spec["recipe"],
        "lora": section["lora"],
        "n_pairs": len(e3.ids),
        "n_used": int(e3.included().sum()),
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
        "timings_s": e3.timings,
    }


def shift(e3: E3Analysis, details: Mapping[str, Any], rng: Any, n_resamples: int) -> Measured:
    """C4: ``P_boot(Delta > 0)``, the paired cluster bootstrap of the CoM shift."""
    rows = e3.included()
    clusters = [c for c, keep in zip(e3.clusters, rows, strict=True) if keep]
    before, after = _ratio(e3.before, rows), _ratio(e3.after, rows)
    result = paired_shift(
        before, after, clusters=clusters, n_resamples=n_resamples, rng=rng("paired-bootstrap")
    )
    layers = e3.before["layers"]
    curves = {
        name: bootstrap_curve(ratio, layers, n_resamples=n_resamples, rng=rng(name))
        for name, ratio in (("before", before), ("after", after))
    }

    def draw(path, heading):
        plot_shift(
            path,
            curves["before"],
            curves["after"],
            delta_samples=result.delta_samples,
            training={k: v for k, v in e3.training.items() if v.get("loss")},
            title=f"{heading}: E(l) before vs after LoRA; CoM {result.com_before:.3f} -> "
            f"{result.com_after:.3f}, L* {result.l_star_before} -> {result.l_star_after}",
            ylabel="normalised recovery (ratio of means)",
            secondary=e3.secondary,
        )

    return Measured(
        observed=result.p_delta_positive,
        numbers={
            "n_used": int(rows.sum()),
            "adaptation_passed": bool(e3.success["passed"]),
            "delta": round(result.delta, 4),
            "com_before": round(result.com_before, 4),
            "com_after": round(result.com_after, 4),
            "L_star_before": result.l_star_before,
            "L_star_after": result.l_star_after,
            "p_L_star_later": round(result.p_l_star_later, 4),
        },
        details=dict(details)
        | {"shift": result.to_dict(), "curves": {k: c.to_records() for k, c in curves.items()}},
        why_not=lambda t: (
            f"P_boot(Delta > 0) = {result.p_delta_positive:.3f} < {t} (Delta = "
            f"{result.delta:+.3f}; L* {result.l_star_before} -> {result.l_star_after}; n = "
            f"{int(rows.sum())} pairs in {result.n_clusters} clusters)"
        ),
        draw=draw,
    )
