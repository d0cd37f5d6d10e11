"""Our sweep vs the naive nnsight script, same model, same pairs, same run.

    python benchmarks/sweep_speed.py [--model whisper-base] [--pairs 4] [--threads 2]

Naive = what one writes by hand: for every stimulus and every layer, one nnsight
trace of the clean run (to read the activation) and one of the corrupt run with
the patch, each from scratch, no batching. Ours = ``listenkit.sweep``: clean and
corrupt once per batch, patched runs restart at the patched layer, batched.
Prints both times, the speed ratio, the max |effect difference| and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from common import model_from_args, warm_up

import listenkit
from listenkit.engine.nnsight_import import nnsight_module
from listenkit.stimuli import noise_pairs, textbank

NNsight = nnsight_module().NNsight


def naive_effects(model, pairs) -> np.ndarray:
    traced = NNsight(model.module)
    effects = np.empty((len(pairs), model.encoder_layers))
    for i, pair in enumerate(pairs):
        tokens = [*model.sot_sequence, *model.text_tokens(pair.text), model.tokenizer.eot]
        inputs = torch.tensor([tokens[:-1]])
        targets = torch.tensor(tokens[len(model.sot_sequence) :])[:, None]
        start = len(model.sot_sequence) - 1
        clean_mel = model.log_mel(pair.clean.audio)[None]
        corrupt_mel = model.log_mel(pair.corrupt.audio)[None]

        def metric(logits, start=start, targets=targets):
            lp = torch.log_softmax(logits[0, start:].double(), -1)
            return float(lp.gather(-1, targets).sum())

        with traced.trace(clean_mel, inputs):
            clean_logits = traced.output.save()
        with traced.trace(corrupt_mel, inputs):
            corrupt_logits = traced.output.save()
        m_clean, m_corrupt = metric(clean_logits), metric(corrupt_logits)
        for layer in range(model.encoder_layers):
            with traced.trace(clean_mel, inputs):
                act = traced.encoder.blocks[layer].attn.output[0].save()
            with traced.trace(corrupt_mel, inputs):
                traced.encoder.blocks[layer].attn.output[0][:] = act
                patched = traced.output.save()
            effects[i, layer] = (metric(patched) - m_corrupt) / (m_clean - m_corrupt)
    return effects


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4)
    args, model = model_from_args(parser)
    pairs = list(noise_pairs(textbank()[: args.pairs], 0.0, "white", seed=20260226))
    warm_up(model, pairs[0].clean.audio)

    start = time.perf_counter()
    ours = listenkit.sweep(
        model, pairs, "encoder.attn_out", floor=1e-9, batch_size=args.pairs, progress=False
    )
    t_ours = time.perf_counter() - start
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    start = time.perf_counter()
    with torch.inference_mode():
        naive = naive_effects(model, pairs)
    t_naive = time.perf_counter() - start
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    diff = float(np.nanmax(np.abs(ours.effects - naive)))
    gap = np.abs(ours.clean - ours.corrupt)
    floor_ok = gap >= 1.0
    diff_floor = float(np.abs(ours.effects - naive)[floor_ok].max()) if floor_ok.any() else 0.0
    print(f"model {args.model}, {len(pairs)} pairs x {model.encoder_layers} layers, "
          f"site encoder.attn_out, {args.threads} threads")  # fmt: skip
    print(f"listenkit.sweep : {t_ours:7.1f} s")
    print(f"naive nnsight   : {t_naive:7.1f} s")
    print(f"speed ratio     : {t_naive / t_ours:7.2f}x")
    print(
        f"max |effect difference| : {diff:.2e} (all pairs; clean-corrupt gaps {np.round(gap, 2)})"
    )
    print(f"max |effect difference| : {diff_floor:.2e} (pairs above the 1-nat floor)")
    print(f"peak RSS after ours: {rss_ours:.0f} MiB; after both: {rss_all:.0f} MiB")


if __name__ == "__main__":
    main()
