"""E3 (pre-registration v3): does the Listen Layer move after LoRA? (claim C4)

Every encoder of a cell is swept on the same evaluation pairs and read the same way:

- ``before``: the unadapted encoder; ``after-j``: LoRA seed ``j`` (``recipe.seed + j``,
  ``j < J``); the profile's controls (``CONTROLS``): LoRA on the last or the first
  encoder layer's value projection only, LoRA trained on permuted labels (transcripts),
  and an adapter that never moved (0 steps: the same as learning rate 0 under AdamW with
  weight decay 0, B = 0).
- ``ser-prosody`` (matched readout): on every encoder, a linear probe trained by the
  frozen recipe (the same data, steps and seed: ``train_probes``) reads the pooled
  encoder output, ``m = logit_c - logit_neutral``. The readout null: probes with seeds
  ``recipe.seed + k`` (``k = 1..K``) on ``before`` and on ``after-0``. The head trained
  jointly with each LoRA is a secondary curve (``joint-j``), as in v2.
- ``asr-noise``: the frozen decoder reads (``ref_logprob`` of the clean audio's greedy
  transcript under the same model): a readout that is not trained, so no readout null.
  Train, validation and evaluation noise come from separate seeds.

Each encoder's sweeps at the claim's site and the reported sites are one cached stage
(adapters are cached by ``adapter_store``): a killed run resumes at its next stage.
C4's statistic (``shift``) is ``listenkit.stats.seeded_shift``: ``margin = q5(Delta_bar*)
- q95(readout null*)`` with two further conditions (every seed's margin, the after curve
deeper than a flat one); the controls (``controls``) decide whether the comparison can
see a shift, and only a real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

import listenkit
from listenkit.analyses.adaptation.adapter_store import Trained, adapter_key, cached_training
from listenkit.analyses.adaptation.lora import LoraSpec
from listenkit.analyses.adaptation.readout import (
    layer_contributions,
    logit_lens_accuracy,
    pooled_sweep,
)
from listenkit.analyses.adaptation.training import (
    Recipe,
    accuracies_of,
    adapted,
    corpus_wer,
    train_asr,
    train_probes,
    train_prosody,
)
from listenkit.experiments.cache import (
    AnalysisCache,
    checkpoint_section,
    resumed_seconds,
    weights_sha256,
)
from listenkit.experiments.measured import Measured, Requirement
from listenkit.experiments.progress import reporter
from listenkit.models.speech_model import SpeechModel
from listenkit.report.plots import plot_shift
from listenkit.stats import RatioOfMeans, bootstrap_curve
from listenkit.stats.seeded_shift import curve_shape, seeded_shift
from listenkit.stimuli.pairs import noise_pairs
from listenkit.stimuli.prosody_set import PROSODY_LABELS, prosody_pairs, prosody_utterances
from listenkit.stimuli.textbank import split_textbank
from listenkit.stimuli.types import Utterance

__all__ = ["E3Analysis", "adapted_enough", "analyse", "controls", "holds", "sentences", "shift"]


@dataclass
class E3Analysis:
    """Raw results of one cell: ``curves[site][name]`` holds ``source``, ``base``,
    ``patched [n, layers]`` and ``layers`` per evaluation pair (the same order in all)."""

    model_name: str
    family: str
    n_layers: int
    site: str  # the claim's site
    ids: list[str]
    clusters: list[str]
    curves: dict
    seeds: int  # J, LoRA seeds
    null_names: list  # readout-null groups: [[probe 0 curve, probe 1 curve, ...], ...]
    floor: float
    success: dict  # per seed and overall
    training: dict
    secondary: dict
    manifests: dict
    timings: dict[str, float] = field(default_factory=dict)

    def after_names(self) -> list[str]:
        return [f"after-{j}" for j in range(self.seeds)]

    def included(self) -> np.ndarray:
        """Pairs past the signed floor under the matched readout of ``before`` and of
        every ``after-j``."""
        keep = np.ones(len(self.ids), dtype=bool)
        for name in ["before", *self.after_names()]:
            arrays = self.curves[self.site][name]
            keep &= (np.asarray(arrays["source"]) - np.asarray(arrays["base"])) >= self.floor
        return keep


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


def _recipe(spec: Mapping[str, Any], profile: str) -> Recipe:
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


def _lora(section: Mapping[str, Any], target: str | None = None) -> LoraSpec:
    spec = section["lora"]
    return LoraSpec(
        r=spec["r"], alpha=spec["alpha"], target=target or spec["target"], dropout=spec["dropout"]
    )


def _per_profile(value: Any, profile: str) -> Any:
    return value[profile] if isinstance(value, Mapping) else value


@dataclass(frozen=True)
class _Adapter:
    """One adapted encoder of the cell: its name, LoRA and recipe."""

    name: str
    lora: LoraSpec
    recipe: Recipe
    shuffled: bool = False  # trained on labels (transcripts) permuted among the utterances


CONTROLS = {
    "late-layer": "control-late-layer",
    "early-layer": "control-early-layer",
    "shuffled-labels": "control-shuffled-labels",
    "zero-step": "control-zero-step",
}


def _adapters(model: SpeechModel, section: Mapping[str, Any], recipe: Recipe, profile: str):
    """``after-j`` for the pre-registered LoRA seeds, then the profile's controls."""
    n_seeds = int(_per_profile(section["lora_seeds"], profile))
    out = [
        _Adapter(f"after-{j}", _lora(section), replace(recipe, seed=recipe.seed + j))
        for j in range(n_seeds)
    ]
    spec = section["controls"]
    for control in _per_profile(spec["run"], profile):
        name = CONTROLS[control]
        if control == "late-layer":
            target = spec["layer_target"].format(layer=model.encoder_layers - 1)
            out.append(_Adapter(name, _lora(section, target), recipe))
        elif control == "early-layer":
            out.append(_Adapter(name, _lora(section, spec["layer_target"].format(layer=0)), recipe))
        elif control == "shuffled-labels":
            out.append(_Adapter(name, _lora(section), recipe, shuffled=True))
        else:
            out.append(_Adapter(name, _lora(section), replace(recipe, steps=0)))
    return out, n_seeds


def _shuffled(utterances: list[Utterance], seed: int, field_name: str) -> list[Utterance]:
    """The utterances with ``meta['label']`` (or ``text``) permuted among them (seeded)."""
    order = np.random.default_rng([seed, 26]).permutation(len(utterances))
    if field_name == "label":
        return [replace(u, meta=dict(u.meta) | {"label": utterances[k].meta["label"]})
                for u, k in zip(utterances, order, strict=True)]  # fmt: skip
    return [replace(u, text=utterances[k].text) for u, k in zip(utterances, order, strict=True)]


def _train_key(model, manifest: str, adapter: _Adapter, family: str) -> str:
    parts = {
        "recipe": adapter.recipe.to_dict(),
        "lora": adapter.lora.to_dict(),
        "shuffled": adapter.shuffled,
        "family": family,
        "variant": "lora",
    }
    return adapter_key(weights_sha256(model.module), manifest, parts)


def _arrays(sweep) -> dict:
    clean = getattr(sweep, "clean", None)
    return {
        "source": np.asarray(sweep.source if clean is None else clean, dtype=np.float64),
        "base": np.asarray(sweep.base if clean is None else sweep.corrupt, dtype=np.float64),
        "patched": np.asarray(sweep.patched, dtype=np.float64),
        "layers": list(sweep.layers),
    }


def _sites(section: Mapping[str, Any], control: bool) -> list[str]:
    return [section["site"]] + ([] if control else list(section.get("reported_sites", [])))


class _Stages:
    """Runs a cell's stages, each cached on its own (``cache``) when there is one."""

    def __init__(self, model: SpeechModel, family: str, profile: str, cache: AnalysisCache | None):
        self.model, self.family, self.profile, self.cache = model, family, profile, cache
        self.weights = weights_sha256(model.module)

    def run(self, name: str, parts: dict[str, Any], compute: Callable[[Any], Any]) -> Any:
        """``compute(done)``: ``done`` is the stage's batch checkpoint (a dict without a
        cache); each batched computation of the stage uses its ``checkpoint_section``."""
        if self.cache is None:
            return compute({})
        key = {"weights": self.weights, **{k: str(v) for k, v in parts.items()}}
        return self.cache.get(
            f"E3-{name}", self.model.name, self.family, self.profile, key, compute, batches=True
        )


def _ser(model, profile, section, spec, cache) -> E3Analysis:
    name, family = model.name, "ser-prosody"
    texts = sentences(section, spec, profile)
    sets = {
        part: prosody_utterances(texts[part], voice=spec["voice"], rms=spec["rms"])
        for part in texts
    }
    train, val, held_out = (list(sets[p]) for p in ("train", "validation", "eval"))
    pairs = prosody_pairs(held_out)
    recipe, n_classes = _recipe(spec, profile), len(PROSODY_LABELS)
    adapters, n_seeds = _adapters(model, section, recipe, profile)
    k_probes = int(section["readout_probes"])
    stages, label = _Stages(model, family, profile, cache), f"E3 {name} ser-prosody"
    timings: dict[str, float] = {}

    def encoder_stage(encoder_name: str, encoder_model, joint_head, null: bool, control: bool):
        seeds = [recipe.seed + k for k in range(k_probes + 1 if null else 1)]

        def compute(done):
            start = time.perf_counter()
            probes = train_probes(
                encoder_model, train, val, recipe, n_classes=n_classes, seeds=seeds,
                feature_progress=reporter(f"{label} {encoder_name} probe features", "utterances"),
            )  # fmt: skip
            heads = {f"probe-{k}": head for k, (head, _) in enumerate(probes)}
            if joint_head is not None:
                heads["joint"] = joint_head
            out = {
                "curves": {},
                "accuracy": accuracies_of(
                    encoder_model,
                    heads,
                    held_out,
                    progress=reporter(f"{label} {encoder_name} held-out accuracy", "utterances"),
                ),
                "probe_logs": {f"probe-{k}": log.to_dict() for k, (_, log) in enumerate(probes)},
            }
            for site in _sites(section, control):
                progress = reporter(f"{label} {encoder_name} {site}", "pairs")
                pooled = pooled_sweep(
                    encoder_model,
                    pairs,
                    site=site,
                    progress=progress,
                    done=checkpoint_section(done, site),
                )
                out["curves"][site] = {h: _arrays(pooled.read(head)) for h, head in heads.items()}
            if encoder_name in ("before", "after-0"):
                probe0 = heads["probe-0"]
                audio = [u.audio for u in held_out]
                out["secondary"] = {
                    "layer_contributions": layer_contributions(encoder_model, audio),
                    "logit_lens_accuracy": logit_lens_accuracy(encoder_model, probe0, held_out),
                }
            out["seconds"] = round(resumed_seconds(done) + time.perf_counter() - start, 1)
            return out

        parts = {
            "encoder": encoder_name,
            "probe_seeds": seeds,
            "sites": _sites(section, control),
            "eval": sets["eval"].manifest_sha256,
            "train": sets["train"].manifest_sha256,
            "recipe": recipe.to_dict(),
        }
        if encoder_model is not model:
            parts["adapter"] = encoder_model.source
        return stages.run("encoder", parts, compute)

    results = {"before": encoder_stage("before", model, None, null=True, control=False)}
    trained: dict[str, Trained] = {}
    for adapter in adapters:

        def run(checkpoint, adapter=adapter):
            data = _shuffled(train, adapter.recipe.seed, "label") if adapter.shuffled else train
            encoder, head, log = train_prosody(
                model,
                data,
                val,
                adapter.recipe,
                n_classes=n_classes,
                lora=adapter.lora,
                progress=reporter(f"{label} training ({adapter.name})", "steps"),
                checkpoint=checkpoint,
            )
            return Trained(encoder, head, log)

        key = _train_key(model, sets["train"].manifest_sha256, adapter, family)
        trained[adapter.name] = cached_training(
            f"{name}-ser-prosody-{adapter.name}", key, model, run, n_classes=n_classes
        )
        # the training's compute time, kept with the adapter (summed over resumes)
        timings[f"train_{adapter.name}_s"] = round(trained[adapter.name].log.seconds, 1)
        after_model = adapted(model, trained[adapter.name].peft_encoder, f"ser-prosody-{key}")
        control = adapter.name.startswith("control")
        results[adapter.name] = encoder_stage(
            adapter.name,
            after_model,
            trained[adapter.name].head,
            null=adapter.name == "after-0",
            control=control,
        )
    curves: dict[str, dict] = {}
    for encoder_name, result in results.items():
        for site, by_head in result["curves"].items():
            site_curves = curves.setdefault(site, {})
            site_curves[encoder_name] = by_head["probe-0"]
            for k in range(1, k_probes + 1):
                if f"probe-{k}" in by_head:
                    site_curves[f"null-{encoder_name}-{k}"] = by_head[f"probe-{k}"]
            if "joint" in by_head and encoder_name.startswith("after"):
                site_curves[f"joint-{encoder_name.split('-')[1]}"] = by_head["joint"]
    null_names = [
        [base] + [f"null-{base}-{k}" for k in range(1, k_probes + 1)]
        for base in ("before", "after-0")
    ]
    threshold = spec["success_accuracy"]
    per_seed = {
        a.name: {
            "accuracy_joint_head": results[a.name]["accuracy"]["joint"],
            "accuracy_matched_probe": results[a.name]["accuracy"]["probe-0"],
            "passed": results[a.name]["accuracy"]["joint"] >= threshold,
        }
        for a in adapters
    }
    seeds_passed = all(per_seed[f"after-{j}"]["passed"] for j in range(n_seeds))
    return E3Analysis(
        model_name=name,
        family=family,
        n_layers=model.encoder_layers,
        site=section["site"],
        ids=[p.id for p in pairs],
        clusters=[f"sentence-{p.meta['sentence']}" for p in pairs],
        curves=curves,
        seeds=n_seeds,
        null_names=null_names,
        floor=spec["exclusion_floor"],
        success={
            "criterion": "every LoRA seed: held-out accuracy of its jointly trained head >= "
            f"{threshold}",
            "accuracy_before_probe": results["before"]["accuracy"]["probe-0"],
            "per_adapter": per_seed,
            "passed": seeds_passed,
        },
        training={k: t.log.to_dict() | {"from_cache": t.from_cache} for k, t in trained.items()}
        | {f"probe-{k}": log for k, log in results["before"]["probe_logs"].items()},
        secondary={
            k: {
                "before": results["before"]["secondary"][k],
                "after": results["after-0"]["secondary"][k],
            }
            for k in ("layer_contributions", "logit_lens_accuracy")
        },
        manifests={p: s.manifest_sha256 for p, s in sets.items()},
        timings=timings | {f"stage_{e}_s": r["seconds"] for e, r in results.items()},
    )


def _asr(model, profile, section, spec, cache) -> E3Analysis:
    name, family = model.name, "asr-noise"
    texts = sentences(section, spec, profile)
    seeds = spec["noise_seeds"]
    sets = {
        part: noise_pairs(
            texts[part], spec["snr_db"], spec["noise"], seeds[part], voice=spec["voice"]
        )
        for part in texts
    }
    train = [p.corrupt for p in sets["train"]]
    val = [p.corrupt for p in sets["validation"]]
    pairs = list(sets["eval"])
    noisy = [p.corrupt for p in pairs]
    recipe = _recipe(spec, profile)
    adapters, n_seeds = _adapters(model, section, recipe, profile)
    stages, label = _Stages(model, family, profile, cache), f"E3 {name} asr-noise"
    timings: dict[str, float] = {}

    def encoder_stage(encoder_name: str, encoder_model, control: bool):
        def compute(done):
            start = time.perf_counter()
            out = {"curves": {}, "wer": corpus_wer(encoder_model, noisy)}
            for site in _sites(section, control):
                result = listenkit.sweep(
                    encoder_model,
                    pairs,
                    site,
                    metric=spec["metric"],
                    reference=spec["reference"],
                    mode="denoise",
                    floor=spec["exclusion_floor"],
                    progress=reporter(f"{label} {encoder_name} {site}", "pairs"),
                    done=checkpoint_section(done, site),
                )
                out["curves"][site] = _arrays(result)
            if encoder_name in ("before", "after-0"):
                out["secondary"] = {
                    "layer_contributions": layer_contributions(encoder_model, noisy)
                }
            out["seconds"] = round(resumed_seconds(done) + time.perf_counter() - start, 1)
            return out

        parts = {
            "encoder": encoder_name,
            "sites": _sites(section, control),
            "eval": sets["eval"].manifest_sha256,
            "metric": spec["metric"],
        }
        if encoder_model is not model:
            parts["adapter"] = encoder_model.source
        return stages.run("encoder", parts, compute)

    results = {"before": encoder_stage("before", model, control=False)}
    trained: dict[str, Trained] = {}
    for adapter in adapters:

        def run(checkpoint, adapter=adapter):
            progress = reporter(f"{label} training ({adapter.name})", "steps")
            data = _shuffled(train, adapter.recipe.seed, "text") if adapter.shuffled else train
            encoder, log = train_asr(
                model, data, val, adapter.recipe, lora=adapter.lora, progress=progress,
                checkpoint=checkpoint,
            )  # fmt: skip
            return Trained(encoder, None, log)

        key = _train_key(model, sets["train"].manifest_sha256, adapter, family)
        trained[adapter.name] = cached_training(f"{name}-asr-noise-{adapter.name}", key, model, run)
        # the training's compute time, kept with the adapter (summed over resumes)
        timings[f"train_{adapter.name}_s"] = round(trained[adapter.name].log.seconds, 1)
        after_model = adapted(model, trained[adapter.name].peft_encoder, f"asr-noise-{key}")
        control = adapter.name.startswith("control")
        results[adapter.name] = encoder_stage(adapter.name, after_model, control=control)
    curves: dict[str, dict] = {}
    for encoder_name, result in results.items():
        for site, arrays in result["curves"].items():
            curves.setdefault(site, {})[encoder_name] = arrays
    wer_before, needed = results["before"]["wer"], spec["success_relative_wer_reduction"]

    def reduction(wer: float) -> float | None:
        return (wer_before - wer) / wer_before if wer_before > 0 else None

    per_seed = {}
    for a in adapters:
        r = reduction(results[a.name]["wer"])
        per_seed[a.name] = {
            "wer": results[a.name]["wer"],
            "relative_reduction": r,
            "passed": r is not None and r >= needed,
        }
    return E3Analysis(
        model_name=name,
        family=family,
        n_layers=model.encoder_layers,
        site=section["site"],
        ids=[p.id for p in pairs],
        clusters=[p.id for p in pairs],
        curves=curves,
        seeds=n_seeds,
        null_names=[],
        floor=spec["exclusion_floor"],
        success={
            "criterion": f"every LoRA seed: held-out WER on {spec['snr_db']:g} dB noise at "
            f"least {needed:.0%} lower (relative)",
            "wer_before": wer_before,
            "per_adapter": per_seed,
            "passed": all(per_seed[f"after-{j}"]["passed"] for j in range(n_seeds)),
        },
        training={k: t.log.to_dict() | {"from_cache": t.from_cache} for k, t in trained.items()},
        secondary={
            "layer_contributions": {
                "before": results["before"]["secondary"]["layer_contributions"],
                "after": results["after-0"]["secondary"]["layer_contributions"],
            }
        },
        manifests={p: s.manifest_sha256 for p, s in sets.items()},
        timings=timings | {f"stage_{e}_s": r["seconds"] for e, r in results.items()},
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
    or ``asr-noise``; ``spec`` its pre-registered table); each encoder's stage cached."""
    run = {"ser-prosody": _ser, "asr-noise": _asr}[family]
    return run(model, profile, section, spec, cache)


def adapted_enough(e3: E3Analysis, needed: int, details: Mapping[str, Any]) -> Requirement:
    """Every LoRA seed met the pre-registered criterion and enough pairs pass the floor
    in ``before`` and every ``after-j``."""
    n_used = int(e3.included().sum())
    reason = ""
    if not e3.success["passed"]:
        failed = [
            k
            for k, v in e3.success["per_adapter"].items()
            if k.startswith("after") and not v["passed"]
        ]
        criterion = e3.success["criterion"]
        reason = f"adaptation did not meet its pre-registered criterion ({criterion}) for {failed}"
    elif n_used < needed:
        reason = f"{n_used} pairs past the floor in every model; the minimum is {needed}"
    return Requirement(
        ok=not reason,
        reason=reason,
        details=dict(details),
        numbers={"n_used": n_used, "adaptation_passed": bool(e3.success["passed"])},
    )


def _ratio(arrays: Mapping[str, Any], rows: np.ndarray) -> RatioOfMeans:
    patched, base = np.asarray(arrays["patched"]), np.asarray(arrays["base"])
    source = np.asarray(arrays["source"])
    return RatioOfMeans(patched[rows] - base[rows, None], (source - base)[rows])


def _past_floor(e3: E3Analysis, site: str, names: list[str]) -> np.ndarray:
    """Pairs whose clean - corrupt gap is past the floor (and > 0) in every curve named."""
    keep = np.ones(len(e3.ids), dtype=bool)
    for name in names:
        arrays = e3.curves[site][name]
        gap = np.asarray(arrays["source"]) - np.asarray(arrays["base"])
        keep &= (gap >= e3.floor) & (gap > 0)
    return keep


def rows_for_test(e3: E3Analysis, site: str, afters: list[str]) -> np.ndarray:
    """The pairs a test of ``afters`` against ``before`` reads: C4's rows (past the floor
    in before and every after-j) that are also past the floor in every curve the test
    reads (the tested curves and the readout-null probes). For C4 itself this drops a
    pair only when a null probe's gap is below the floor (amendment of 2026-12-03)."""
    names = ["before", *afters, *(name for group in e3.null_names for name in group)]
    return e3.included() & _past_floor(e3, site, names)


def _test(e3: E3Analysis, site: str, afters: list[str], rng, n_resamples: int):
    rows = rows_for_test(e3, site, afters)
    curves = e3.curves[site]
    clusters = [c for c, keep in zip(e3.clusters, rows, strict=True) if keep]
    nulls = [[_ratio(curves[name], rows) for name in group] for group in e3.null_names]
    return seeded_shift(
        _ratio(curves["before"], rows),
        [_ratio(curves[a], rows) for a in afters],
        null_groups=nulls,
        clusters=clusters,
        n_resamples=n_resamples,
        rng=rng,
    )


def holds(measured: Measured) -> bool:
    """C4's rule on a measurement: margin > 0 and every further condition true."""
    return bool(measured.observed is not None and measured.observed > 0
                and all(v is True for v in measured.conditions.values()))  # fmt: skip


def controls(
    e3: E3Analysis, details: Mapping[str, Any], rng, n_resamples: int, *, claim_holds: bool
) -> Requirement:
    """Can the comparison see a shift, and only a real one? Each control encoder is
    tested by C4's own rule (``SeededShift.holds``) against ``before``:

    - late-layer (LoRA on the last layer only; its adaptation must meet the criterion)
      must hold; when it does not and C4 does not hold either, the cell is
      inconclusive (the comparison may be blind); a C4 that holds stands;
    - early-layer (LoRA on the first layer only) and shuffled-labels (LoRA trained on
      permuted labels or transcripts) must not hold; when one does, the cell is
      inconclusive (the comparison calls shifts that are not there);
    - zero-step (an adapter that never moved): reported, its Delta should be 0.
    """
    present = [name for name in CONTROLS.values() if name in e3.curves[e3.site]]
    pairs = {name: int(rows_for_test(e3, e3.site, [name]).sum()) for name in present}
    results = {
        name: _test(e3, e3.site, [name], rng(name), n_resamples) for name in present if pairs[name]
    }
    numbers: dict[str, Any] = {}
    problems = []
    for name in present:
        short = name.removeprefix("control-").replace("-", "_")
        numbers[f"control_{short}_pairs"] = pairs[name]
        if name not in results:  # no pair past the floor in this control: untestable
            numbers[f"control_{short}_holds"] = None
            if name != "control-zero-step" and not (name == "control-late-layer" and claim_holds):
                problems.append(
                    f"the {name} control has no pair past the floor: it cannot be tested"
                )
            continue
        numbers[f"control_{short}_holds"] = results[name].holds()
        numbers[f"control_{short}_delta"] = round(results[name].delta, 4)
    late = results.get("control-late-layer")
    if late is not None:
        learned = e3.success["per_adapter"].get("control-late-layer", {}).get("passed", False)
        numbers["control_late_layer_adapted"] = bool(learned)
        if not (late.holds() and learned) and not claim_holds:
            why = "its adaptation missed the criterion" if not learned else (
                f"margin {late.margin:+.4f}, deep margin {late.deep_margin:+.4f}")  # fmt: skip
            problems.append(
                "the positive control (LoRA on the last layer only) did not pass C4's rule "
                f"({why}), so a C4 that does not hold cannot be read as 'no shift'"
            )
    for name, what in (("control-early-layer", "LoRA on the first layer only"),
                       ("control-shuffled-labels", "LoRA trained on permuted labels")):  # fmt: skip
        if name in results and results[name].holds():
            r = results[name]
            problems.append(
                f"the {what} passes C4's rule (margin {r.margin:+.4f}, deep margin "
                f"{r.deep_margin:+.4f}): the comparison calls a shift where none was planted"
            )
    return Requirement(
        ok=not problems,
        reason="; ".join(problems),
        numbers=numbers,
        details=dict(details) | {"controls": {k: r.to_dict() for k, r in results.items()}},
    )


def evidence(
    e3: E3Analysis, section: Mapping[str, Any], spec: Mapping[str, Any], profile: str
) -> dict[str, Any]:
    return {
        "family": spec["description"],
        "metric": spec["metric"],
        "site": e3.site,
        "reported_sites": list(section.get("reported_sites", [])),
        "recipe": spec["recipe"],
        "lora": section["lora"],
        "lora_seeds": e3.seeds,
        "n_pairs": len(e3.ids),
        "n_used": int(e3.included().sum()),
        "floor": e3.floor,
        "adaptation_success": e3.success,
        "training": e3.training,
        "secondary": e3.secondary,
        "curves": {
            site: {
                name: {k: np.asarray(v).tolist() for k, v in arrays.items()}
                for name, arrays in by_name.items()
            }
            for site, by_name in e3.curves.items()
        },
        "ids": e3.ids,
        "clusters": e3.clusters,
        "stimulus_manifests_sha256": e3.manifests,
        "profile_sentences": spec["sentences"][profile],
        "timings_s": e3.timings,
    }


def _shapes(e3: E3Analysis, site: str, rows: np.ndarray) -> dict[str, dict[str, float]]:
    """Each curve's shape over ``rows`` that are also past the floor in that curve
    (``n_pairs``: how many); a curve with no such pair has no shape."""
    out: dict[str, dict[str, float]] = {}
    for name, arrays in e3.curves[site].items():
        own = rows & _past_floor(e3, site, [name])
        if own.any():
            shape = curve_shape(_ratio(arrays, own).value())
            out[name] = {k: round(v, 4) for k, v in shape.items()} | {"n_pairs": int(own.sum())}
    return out


def shift(e3: E3Analysis, details: Mapping[str, Any], rng: Any, n_resamples: int) -> Measured:
    """C4: ``margin = q5(Delta_bar*) - q95(readout null*)`` at the claim's site (the
    reported sites and the jointly trained heads' curves: numbers only)."""
    rows = e3.included()
    afters = e3.after_names()
    result = _test(e3, e3.site, afters, rng("seeded-bootstrap"), n_resamples)

    def report(site: str, names: list[str], key: str) -> dict:
        if not rows_for_test(e3, site, names).any():
            return {"untestable": "no pair past the floor in every curve this test reads"}
        return _test(e3, site, names, rng(key), n_resamples).to_dict()

    reported = {site: report(site, afters, f"reported-{site}") for site in e3.curves
                if site != e3.site}  # fmt: skip
    joint = [f"joint-{j}" for j in range(e3.seeds)]
    if all(j in e3.curves[e3.site] for j in joint):
        reported["joint-heads (v2's readout)"] = report(e3.site, joint, "joint")
    shapes = _shapes(e3, e3.site, rows)
    layers = e3.curves[e3.site]["before"]["layers"]
    curves = {
        name: bootstrap_curve(
            _ratio(e3.curves[e3.site][name], rows),
            layers,
            n_resamples=n_resamples,
            rng=rng(f"curve-{name}"),
        )
        for name in ("before", "after-0")
    }

    def draw(path, heading):
        plot_shift(
            path,
            curves["before"],
            curves["after-0"],
            delta_samples=result.samples,
            null_samples=result.null_samples if e3.null_names else None,
            training={
                k: v for k, v in e3.training.items() if v.get("loss") and not k.startswith("probe")
            },
            title=f"{heading} ({e3.site}): E(l) before vs after LoRA seed 0 of {e3.seeds}; "
            f"Delta_bar {result.delta:+.3f}, margin {result.margin:+.3f}",
            ylabel="normalised recovery (ratio of means)",
            secondary=e3.secondary,
        )

    per_seed = [round(d, 4) for d in result.deltas_per_seed]
    return Measured(
        observed=result.margin,
        conditions={
            "every seed's margin > 0": bool(min(result.margins_per_seed) > 0),
            "the after curve lies deeper than a flat one": bool(result.deep_margin > 0),
        },
        numbers={
            "n_used": int(rows.sum()),
            "n_tested": int(rows_for_test(e3, e3.site, afters).sum()),
            "adaptation_passed": bool(e3.success["passed"]),
            "seeds": e3.seeds,
            "delta": round(result.delta, 4),
            "delta_lower": round(result.lower, 4),
            "deep_lower": round(result.deep_lower, 4),
            "deep_margin": round(result.deep_margin, 4),
            "seed_margins": [round(m, 4) for m in result.margins_per_seed],
            "readout_null_q95": round(result.null_q95, 4),
            "p_delta_positive": round(result.p_delta_positive, 4),
            "com_before": shapes["before"]["com"],
            "com_after_seed0": shapes["after-0"]["com"],
            "com_minus_flat_before": shapes["before"]["com_minus_flat"],
            "com_minus_flat_after_seed0": shapes["after-0"]["com_minus_flat"],
            "peak_to_mean_before": shapes["before"]["peak_to_mean"],
            "peak_to_mean_after_seed0": shapes["after-0"]["peak_to_mean"],
        },
        details=dict(details)
        | {
            "shift": result.to_dict(),
            "reported": reported,
            "curve_shapes": shapes,
            "curves": {k: c.to_records() for k, c in curves.items()},
        },
        why_not=lambda t: (
            f"margin = q5(Delta_bar*) - q95(readout null*) = {result.lower:+.4f} - "
            f"{result.null_q95:+.4f} = {result.margin:+.4f} (needs > {t:g}); seed margins "
            f"{[round(m, 4) for m in result.margins_per_seed]} (each needs > 0); "
            f"q5(CoM(after*) - CoM_flat) - null q95 = {result.deep_margin:+.4f} (needs > 0) "
            f"(Delta_bar "
            f"{result.delta:+.4f} over {e3.seeds} seed(s), per seed {per_seed}; "
            f"CoM - flat: before {shapes['before']['com_minus_flat']:+.3f}, after-0 "
            f"{shapes['after-0']['com_minus_flat']:+.3f}; n = {int(rows.sum())} pairs in "
            f"{result.n_clusters} clusters)"
        ),
        draw=draw,
    )
