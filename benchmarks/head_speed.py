"""Our head sweep vs a hand-written per-head nnsight loop, same model, same pairs, same run.

    python benchmarks/head_speed.py [--model whisper-tiny.en] [--pairs 2] [--threads 2]

Naive = what one writes by hand: for every pair, layer and head, one nnsight trace of
the clean run to read the head's slice of ``attn.out``'s input and one of the corrupt
run with that slice replaced, each from scratch. Ours = ``head_sweep``: clean and
corrupt once per batch, every head patched in a run that restarts at its layer.
Prints both times, the speed ratio and the max |difference| of the patched metrics.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import model_from_args, warm_up

from listenkit.analyses.heads import head_sweep
from listenkit.engine.nnsight_import import nnsight_module
from listenkit.stimuli import noise_pairs, textbank

NNsight = nnsight_module().NNsight


def naive_head_patches(model, pairs, transcripts) -> np.ndarray:
    traced = NNsight(model.module)
    width = model.d_model // model.heads
    out = np.empty((len(pairs), model.encoder_layers, model.heads))
    for i, (pair, transcript) in enumerate(zip(pairs, transcripts, strict=True)):
        tokens = [*model.sot_sequence, *transcript, model.tokenizer.eot]
        inputs = torch.tensor([tokens[:-1]])
        targets = torch.tensor(tokens[len(model.sot_sequence) :])[:, None]
        start = len(model.sot_sequence) - 1
        clean_mel = model.log_mel(pair.clean.audio)[None]
        corrupt_mel = model.log_mel(pair.corrupt.audio)[None]
        for layer in range(model.encoder_layers):
            for head in range(model.heads):
                cols = slice(head * width, (head + 1) * width)
                with traced.trace(clean_mel, inputs):
                    z = traced.encoder.blocks[layer].attn.out.input.save()
                with traced.trace(corrupt_mel, inputs):
                    traced.encoder.blocks[layer].attn.out.input[..., cols] = z[..., cols]
                    logits = traced.output.save()
                lp = torch.log_softmax(logits[0, start:].double(), -1)
                out[i, layer, head] = float(lp.gather(-1, targets).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2)
    parser.set_defaults()
    args, model = model_from_args(parser)
    pairs = list(noise_pairs(textbank()[: args.pairs], 0.0, "white", seed=20260226))
    warm_up(model, pairs[0].clean.audio)

    start = time.perf_counter()
    ours = head_sweep(model, pairs, batch_size=args.pairs, progress=False)
    t_ours = time.perf_counter() - start
    transcripts = model.greedy_tokens([p.clean.audio for p in pairs])

    start = time.perf_counter()
    with torch.inference_mode():
        naive = naive_head_patches(model, pairs, transcripts)
    t_naive = time.perf_counter() - start

    diff = float(np.abs(ours.patched - naive).max())
    runs = len(pairs) * model.encoder_layers * model.heads
    print(f"model {args.model}, {len(pairs)} pairs x {model.encoder_layers} layers x "
          f"{model.heads} heads = {runs} patched runs, {args.threads} threads")  # fmt: skip
    print(f"head_sweep         : {t_ours:7.1f} s")
    print(f"naive nnsight loop : {t_naive:7.1f} s")
    print(f"speed ratio        : {t_naive / t_ours:7.2f}x")
    print(f"max |patched metric difference| : {diff:.2e} nats")


if __name__ == "__main__":
    main()
