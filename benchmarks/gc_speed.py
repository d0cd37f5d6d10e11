"""The gc sweep (E2) vs a hand-written hook script, same model, same stimuli, same run.

    python benchmarks/gc_speed.py [--model whisper-base] [--per-flip-type 1] [--threads 2]

Naive = what one writes by hand: for every stimulus and every decoder layer, a full
model forward of the source run that records the stream and a full forward of the
base run with the patch (both streams, the a and b rows as one batch of two).
Ours without the K/V cache = ``listenkit.analyses.grounding.whisper`` with every decoder block
projecting the encoder output to cross-attention keys and values itself (the
behaviour before ``listenkit.engine.decoder_kv``). Ours = ``listenkit.analyses.grounding.whisper``:
encoder outputs memoised, patched runs restart at the patched block, and the
cross-attention projections computed once per audio item.
Prints the times, the speed ratios and the largest |margin difference| (nats).
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import torch
from common import model_from_args, warm_up

import listenkit.engine.backends.hooks
from listenkit.analyses.grounding.whisper import GroundingSweep, grounding_sweep
from listenkit.stimuli import conflict_stimuli
from listenkit.stimuli.conflict import align_flip


def _margin(logits: torch.Tensor, rows: list[list[int]], start: int) -> float:
    lp = torch.log_softmax(logits.double(), -1)
    total = 0.0
    for sign, row, row_lp in zip((1.0, -1.0), rows, lp, strict=True):
        targets = torch.tensor(row[start:])[:, None]
        total += sign * float(row_lp[start - 1 : len(row) - 1].gather(-1, targets).sum())
    return total


def _rows(model, al, prompt) -> tuple[list[list[int]], int]:
    """The a and b rows under ``prompt`` and the index of the first scored token."""
    head = model.prompt_prefix(prompt) + list(al.prefix)
    return [head + list(al.ref_span), head + list(al.conflict_span)], len(head)


def _forward(module, mel: torch.Tensor, rows: list[list[int]]) -> torch.Tensor:
    return module(mel, torch.tensor([r[:-1] for r in rows]))


def _with_hook(target, hook, module, mel: torch.Tensor, rows: list[list[int]]) -> torch.Tensor:
    """Logits of a full forward with ``hook`` on ``target``."""
    handle = target.register_forward_hook(hook)
    try:
        return _forward(module, mel, rows)
    finally:
        handle.remove()


def naive_margins(model, stimuli) -> tuple[np.ndarray, np.ndarray]:
    """``(audio_patched, text_patched)`` ``[n, layers]`` from full forwards with hooks."""
    module = model.module
    audio_out = np.empty((len(stimuli), model.decoder_layers))
    text_out = np.empty((len(stimuli), model.decoder_layers))
    for i, s in enumerate(stimuli):
        al = align_flip(s.ref_text, s.conflict_text, model.text_tokens)
        rows_x, start = _rows(model, al, al.conflict_tokens)
        rows_t, _ = _rows(model, al, al.ref_tokens)
        mel_ref = model.log_mel(s.ref_audio.audio)[None].expand(2, -1, -1)
        mel_conflict = model.log_mel(s.conflict_audio.audio)[None].expand(2, -1, -1)
        prompt = list(range(1, 1 + len(al.conflict_tokens)))  # after <|startofprev|>
        for layer, block in enumerate(module.decoder.blocks):
            saved: dict[str, torch.Tensor] = {}
            # audio stream: the cross-attention output of x_a at all positions
            _with_hook(
                block.cross_attn,
                lambda _m, _a, out, saved=saved: saved.__setitem__("a", out[0].clone()),
                module,
                mel_conflict,
                rows_x,
            )
            logits = _with_hook(
                block.cross_attn,
                lambda _m, _a, out, saved=saved: (saved["a"], *out[1:]),
                module,
                mel_ref,
                rows_x,
            )
            audio_out[i, layer] = _margin(logits, rows_x, start)
            # text stream: the block output of x_t at the prompt positions
            _with_hook(
                block,
                lambda _m, _a, out, saved=saved: saved.__setitem__("t", out.clone()),
                module,
                mel_ref,
                rows_t,
            )
            logits = _with_hook(
                block,
                lambda _m, _a, out, saved=saved, prompt=prompt: out.index_copy(
                    1, torch.tensor(prompt), saved["t"][:, prompt]
                ),
                module,
                mel_ref,
                rows_x,
            )
            text_out[i, layer] = _margin(logits, rows_x, start)
    return audio_out, text_out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-flip-type", type=int, default=1)
    args, model = model_from_args(parser)
    stimuli = list(
        conflict_stimuli(
            per_flip_type=args.per_flip_type,
            encode=model.text_tokens,
            tokenizer_name=model.name,
            seed=20260226,
        )
    )
    warm_up(model, stimuli[0].ref_audio.audio)

    def timed(fn):
        start = time.perf_counter()
        with torch.inference_mode():
            out = fn()
        return out, time.perf_counter() - start

    ours, t_ours = timed(lambda: grounding_sweep(model, stimuli, progress=False))
    with mock.patch.object(listenkit.engine.backends.hooks, "cross_kv", lambda *_a, **_k: {}):
        uncached, t_uncached = timed(lambda: grounding_sweep(model, stimuli, progress=False))
    (naive_a, naive_t), t_naive = timed(lambda: naive_margins(model, stimuli))

    def worst(a: GroundingSweep, audio: np.ndarray, text: np.ndarray) -> float:
        return float(
            max(np.abs(a.audio_patched - audio).max(), np.abs(a.text_patched - text).max())
        )

    diff_cache = worst(ours, uncached.audio_patched, uncached.text_patched)
    diff_naive = worst(ours, naive_a, naive_t)
    print(f"model {args.model}, {len(stimuli)} conflicts x {model.decoder_layers} decoder layers, "
          f"audio and text streams, {args.threads} threads")  # fmt: skip
    print(f"listenkit.analyses.grounding.whisper        : {t_ours:7.1f} s")
    print(f"the same without the K/V cache   : {t_uncached:7.1f} s "
          f"(cache speed-up {t_uncached / t_ours:.2f}x)")  # fmt: skip
    print(f"naive hook script                : {t_naive:7.1f} s "
          f"(speed ratio {t_naive / t_ours:.2f}x)")  # fmt: skip
    print(
        f"max |margin difference| (nats): vs no cache {diff_cache:.2e}, vs naive {diff_naive:.2e}"
    )


if __name__ == "__main__":
    main()
