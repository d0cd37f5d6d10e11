"""Do the real models hear the stimuli as intended? (real weights, real TTS)

Pre-set gates, chosen before measuring: whisper-base transcribes the clean Piper
sentences of the default set with median WER <= 5% (the first 24 sentences), and the corrupt
side of the default noise family (white noise, 0 dB) is clearly worse: higher mean
WER and a median drop of the clean transcript's log-prob of at least 1 nat (the
claims' exclusion floor).
"""

from __future__ import annotations

import numpy as np

from listenkit.engine.wer import wer
from listenkit.stimuli import noise_pairs, pocketsphinx_clips, textbank

N_SENTENCES = 24


def _transcribe(model, waves, size=8):
    out = []
    for i in range(0, len(waves), size):
        out += model.transcribe(list(waves[i : i + size]))
    return out


def test_whisper_base_hears_clean_speech_and_noise_hurts(base_model):
    pairs = list(noise_pairs(textbank()[:N_SENTENCES], 0.0, "white", seed=20260226))
    texts = [p.text for p in pairs]
    clean, corrupt, drops = [], [], []
    for i in range(0, len(pairs), 8):
        chunk = pairs[i : i + 8]
        f_clean = base_model.encode(base_model.log_mel([p.clean.audio for p in chunk]))
        f_corrupt = base_model.encode(base_model.log_mel([p.corrupt.audio for p in chunk]))
        tokens = base_model.greedy_tokens_from_features(f_clean)
        clean += [base_model.decode_tokens(t) for t in tokens]
        corrupt += [
            base_model.decode_tokens(t) for t in base_model.greedy_tokens_from_features(f_corrupt)
        ]
        a = base_model.token_logprobs_from_features(f_clean, tokens)
        b = base_model.token_logprobs_from_features(f_corrupt, tokens)
        drops += [x.sum() - y.sum() for x, y in zip(a, b, strict=True)]
    w_clean, w_corrupt = np.array(wer(texts, clean)), np.array(wer(texts, corrupt))
    print(
        f"whisper-base, {len(pairs)} sentences: clean WER median {np.median(w_clean):.3f} "
        f"mean {w_clean.mean():.3f}; white 0 dB WER median {np.median(w_corrupt):.3f} "
        f"mean {w_corrupt.mean():.3f}; median log-prob drop {np.median(drops):.2f} nats"
    )
    assert np.median(w_clean) <= 0.05
    assert w_corrupt.mean() > w_clean.mean()
    assert np.median(drops) >= 1.0


def test_real_clips_are_transcribed(base_model):
    clips = pocketsphinx_clips()
    hyps = _transcribe(base_model, [c.audio for c in clips])
    w = np.array(wer([c.text for c in clips], hyps))
    print(f"whisper-base on 12 pocketsphinx clips: mean WER {w.mean():.3f}")
    assert np.median(w) <= 0.25  # real, older recordings; a sanity gate, not a benchmark
