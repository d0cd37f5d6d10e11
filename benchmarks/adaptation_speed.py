"""E3 costs: LoRA training throughput, the adapter cache, and sweeps on merged vs unmerged
adapters, same model, same stimuli, same run.

    python benchmarks/adaptation_speed.py [--model whisper-tiny.en] [--steps 4] [--threads 2]

- training: examples/s of LoRA + head (prosody) and LoRA under the ASR loss, and of the
  frozen-encoder head (features computed once);
- cache: the second ``cached_training`` call loads the adapter instead of training;
- sweeps: our readout sweep on the merged adapter (``W + (alpha/r) B A`` folded into
  the weights) vs the naive one on the unmerged ``peft`` layers (an extra low-rank
  branch in every value projection), and vs the base model (the "before" sweep).
  Prints times, ratios and the max |difference| of the patched metrics.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
from common import model_from_args, warm_up

from listenkit.analyses.adaptation.adapter_store import Trained, cached_training
from listenkit.analyses.adaptation.lora import LoraSpec, adapted_model
from listenkit.analyses.adaptation.readout import readout_sweep
from listenkit.analyses.adaptation.training import Recipe, train_asr, train_prosody
from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli import noise_pairs
from listenkit.stimuli.prosody_set import prosody_pairs, prosody_utterances
from listenkit.stimuli.textbank import split_textbank


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    args, model = model_from_args(parser)
    split = split_textbank("listenkit-e3-v2", eval_below=64, validation_below=40)
    train = list(prosody_utterances(split["train"][:8]))
    val = list(prosody_utterances(split["validation"][:2]))
    held_out = list(prosody_utterances(split["eval"][:2]))
    warm_up(model, train[0].audio)
    recipe = Recipe(lr=1e-3, head_lr=1e-2, steps=args.steps, batch_size=args.batch_size,
                    seed=0, eval_every=args.steps)  # fmt: skip

    def lora_run(checkpoint):
        return Trained(
            *train_prosody(
                model, train, val, recipe, n_classes=4, lora=LoraSpec(), checkpoint=checkpoint
            )
        )

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trained = cached_training("bench", "k", model, lora_run, n_classes=4, root=Path(tmp))
        t_train = time.perf_counter() - start
        start = time.perf_counter()
        cached_training("bench", "k", model, lora_run, n_classes=4, root=Path(tmp))
        t_cached = time.perf_counter() - start
    _, _, frozen = train_prosody(model, train, val, recipe, n_classes=4, lora=None)
    noisy = [p.corrupt for p in noise_pairs(split["train"][:8], 0.0, "white", 20260226)]
    _, asr = train_asr(model, noisy, noisy[:2], recipe, lora=LoraSpec())

    pairs = prosody_pairs(held_out)
    merged = adapted_model(model, trained.peft_encoder, name="merged")
    unmerged_module = copy.deepcopy(model.module)
    unmerged_module.encoder = copy.deepcopy(trained.peft_encoder).base_model.model
    unmerged = SpeechModel(name="unmerged", module=unmerged_module, source="benchmark")
    times, sweeps = {}, {}
    for name, m in (("base", model), ("merged", merged), ("unmerged", unmerged)):
        start = time.perf_counter()
        sweeps[name] = readout_sweep(m, trained.head, pairs)
        times[name] = time.perf_counter() - start
    diff = float(np.abs(sweeps["merged"].patched - sweeps["unmerged"].patched).max())

    print(
        f"model {args.model}, {args.threads} threads, batch {args.batch_size}, {args.steps} steps"
    )
    print(f"LoRA + head (prosody) training : {trained.log.examples_per_s:7.3f} examples/s "
          f"({trained.log.seconds:.1f} s incl. validation)")  # fmt: skip
    print(f"LoRA, ASR loss, decoder frozen : {asr.examples_per_s:7.3f} examples/s")
    print(f"frozen-encoder head            : {frozen.examples_per_s:7.3f} examples/s "
          "(features computed once)")  # fmt: skip
    print(f"adapter cache: train {t_train:.1f} s, load {t_cached:.2f} s "
          f"({t_train / t_cached:.0f}x)")  # fmt: skip
    print(f"readout sweep, {len(pairs)} pairs x {model.encoder_layers} layers:")
    for name in times:
        print(f"  {name:9s}: {times[name]:6.1f} s")
    print(f"speed ratio unmerged / merged  : {times['unmerged'] / times['merged']:.2f}x")
    print(f"after / before (merged / base) : {times['merged'] / times['base']:.2f}x")
    print(f"max |patched metric difference| merged vs unmerged: {diff:.2e} logits")


if __name__ == "__main__":
    main()
