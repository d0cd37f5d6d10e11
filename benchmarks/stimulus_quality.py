"""Measure how Whisper hears listenkit's stimuli (numbers for the stimuli report).

    python benchmarks/stimulus_quality.py [--n 56] [--conflicts-per-type 100]

Prints WER (Whisper-normalised) of whisper-tiny.en and whisper-base on clean Piper
speech and on each corruption, the median per-pair drop of the clean transcript's
log-prob, WER on the 12 real pocketsphinx clips, conflict alignment counts per flip
type, and the Text Dominance Ratio with the previous-text prompt as text channel.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

import listenkit
from listenkit.analyses.grounding.margins import conflict_margins, text_dominance_ratio
from listenkit.engine.wer import wer
from listenkit.stimuli import (
    align_flip,
    conflict_stimuli,
    noise_pairs,
    pocketsphinx_clips,
    speed_pairs,
    textbank,
    voice_pairs,
)
from listenkit.stimuli.conflict import conflict_templates

VOICES = (
    "espeak-ng:en-gb",
    "espeak-ng:en-gb-scotland",
    "espeak-ng:en-029",
    "flite:slt",
    "flite:kal16",
)
QUICK_VOICES = ("espeak-ng:en-gb", "flite:slt")


def batched(model, waves, fn, size=8):
    out = []
    for i in range(0, len(waves), size):
        out += fn(model, waves[i : i + size])
    return out


def transcribe(model, waves):
    return model.transcribe(list(waves))


def pair_report(model, name, pairs):
    clean = batched(model, [p.clean.audio for p in pairs], transcribe)
    corrupt = batched(model, [p.corrupt.audio for p in pairs], transcribe)
    texts = [p.text for p in pairs]
    w_clean, w_corrupt = np.array(wer(texts, clean)), np.array(wer(texts, corrupt))
    drops = []
    for i in range(0, len(pairs), 8):
        chunk = pairs[i : i + 8]
        hyp = clean[i : i + 8]
        s_clean = model.score([p.clean.audio for p in chunk], hyp)
        s_corrupt = model.score([p.corrupt.audio for p in chunk], hyp)
        drops += [a - b for a, b in zip(s_clean, s_corrupt, strict=True)]
    drops = np.array(drops)
    print(
        f"| {model.name} | {name} | {np.median(w_clean):.3f} / {w_clean.mean():.3f} | "
        f"{np.median(w_corrupt):.3f} / {w_corrupt.mean():.3f} | {np.median(drops):.2f} | "
        f"{np.mean(drops >= 1.0):.2f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=56)
    parser.add_argument("--conflicts-per-type", type=int, default=100)
    parser.add_argument("--models", default="whisper-tiny.en,whisper-base")
    parser.add_argument("--quick", action="store_true", help="two voices, no babble")
    args = parser.parse_args()
    models = args.models.split(",")
    texts = textbank()[: args.n]
    sets = {
        f"noise white {snr:g} dB": noise_pairs(texts, snr, "white", seed=20260226)
        for snr in (10, 0, -5)
    }
    if not args.quick:
        sets["noise babble 0 dB"] = noise_pairs(texts, 0, "babble", seed=20260226)
    for voice in QUICK_VOICES if args.quick else VOICES:
        sets[f"voice joe vs {voice}"] = voice_pairs(texts, "piper:joe", voice)
    for factor in (1.5, 0.75):
        sets[f"speed x{factor:g}"] = speed_pairs(texts, factor)
    print(f"n = {len(texts)} sentences (text bank v1, first {len(texts)})")
    print(
        "| model | corruption | clean WER median / mean | corrupt WER median / mean "
        "| median score drop (nats) | share drop >= 1 nat |"
    )
    print("|---|---|---|---|---|---|")
    for model_name in models:
        model = listenkit.load_model(model_name)
        for name, pairs in sets.items():
            pair_report(model, name, list(pairs))
    clips = pocketsphinx_clips()
    print("\nReal speech (12 pocketsphinx clips):")
    for model_name in models:
        model = listenkit.load_model(model_name)
        hyps = batched(model, [c.audio for c in clips], transcribe)
        w = np.array(wer([c.text for c in clips], hyps))
        print(f"{model_name}: mean WER {w.mean():.3f}, median {np.median(w):.3f}")
        for c, h, x in zip(clips, hyps, w, strict=True):
            print(f"   {x:.2f}  {c.text!r} -> {h!r}")
    print("\nConflict stimuli:")
    for model_name in models:
        model = listenkit.load_model(model_name)
        survived = {}
        for flip_type, templates in conflict_templates().items():
            reasons = Counter(
                align_flip(t.ref_text, t.conflict_text, model.text_tokens).reason for t in templates
            )
            survived[flip_type] = f"{reasons['aligned']}/{len(templates)} {dict(reasons)}"
        print(f"{model_name}: aligned / templated per flip type: {survived}")
        start = time.time()
        stims = conflict_stimuli(
            per_flip_type=args.conflicts_per_type,
            encode=model.text_tokens,
            tokenizer_name=model.name,
        )
        for prompt in ("conflict", None):
            margins = conflict_margins(model, list(stims), text_channel=prompt)
            tdr = text_dominance_ratio(margins, list(stims))
            table = ", ".join(f"{k} {v:.3f} (n={n})" for k, (v, n) in tdr.items())
            print(f"   TDR with prompt={prompt}: {table}; median m = {np.median(margins):.2f} nats")
        print(f"   ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
