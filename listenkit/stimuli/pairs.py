"""Minimal-pair generators: the same text, one attribute changed.

- ``noise_pairs``: clean TTS vs the same audio plus seeded noise at an exact SNR.
- ``voice_pairs``: one voice vs another (accent / speaker).
- ``speed_pairs``: Piper at its natural rate vs resynthesised ``factor`` times faster
  (``length_scale = 1 / factor``).

Each returns a cached ``StimulusSet`` of ``Pair``s (built once, manifest on disk).
Noise for pair ``i`` comes from ``numpy.random.default_rng([seed, i])``, so a pair's
audio does not depend on which other pairs are in the set.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence

import numpy as np

from listenkit._version import __version__
from listenkit.stimuli.noise import NOISE_KINDS, make_noise, mix_at_snr, speech_span
from listenkit.stimuli.store import StimulusSet, cached_stimulus_set
from listenkit.stimuli.tts import PiperVoice, get_voice
from listenkit.stimuli.types import Pair, Utterance

__all__ = ["noise_pairs", "speed_pairs", "voice_pairs"]

DEFAULT_VOICE = "piper:joe"


@functools.cache
def _voice(spec: str):
    return get_voice(spec)


@functools.cache
def _piper(length_scale: float) -> PiperVoice:
    return PiperVoice(length_scale=length_scale)


def _versions(*voices) -> dict[str, str]:
    return {
        "listenkit": __version__,
        "numpy": importlib.metadata.version("numpy"),
        **{v.name: v.version() for v in voices},
    }


def _check_texts(texts: Sequence[str]) -> list[str]:
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("no texts given")
    if any(not t.strip() for t in texts):
        raise ValueError("empty text in the list")
    return texts


def _babble_clips() -> list[np.ndarray]:
    from listenkit.stimuli.real_speech import pocketsphinx_clips

    return [u.audio for u in pocketsphinx_clips() if u.id.startswith("pocketsphinx/librivox/")]


def noise_pairs(
    texts: Sequence[str],
    snr_db: float,
    noise: str = "white",
    seed: int = 0,
    *,
    voice: str = DEFAULT_VOICE,
) -> StimulusSet:
    """Clean speech vs the same speech plus ``noise`` at ``snr_db`` over the speech span.

    Babble is the sum of six real LibriVox talkers (pocketsphinx test clips).
    """
    texts = _check_texts(texts)
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; known: {', '.join(NOISE_KINDS)}")
    params = {
        "texts": texts,
        "snr_db": float(snr_db),
        "noise": noise,
        "seed": int(seed),
        "voice": voice,
    }

    def build():
        tts = _voice(voice)
        clips = _babble_clips() if noise == "babble" else ()
        pairs = []
        for i, text in enumerate(texts):
            clean = tts.synthesize(text)
            rng = np.random.default_rng([int(seed), i])
            span = speech_span(clean)
            corrupt, measured = mix_at_snr(
                clean, make_noise(noise, clean.size, rng, babble_clips=clips), snr_db, span=span
            )
            pid = f"noise-{noise}-{snr_db:g}dB/{i:04d}"
            pairs.append(
                Pair(
                    id=pid,
                    attribute="noise",
                    level=f"{noise}@{snr_db:g}dB",
                    clean=Utterance(
                        id=f"{pid}/clean", text=text, audio=clean, meta={"voice": voice}
                    ),
                    corrupt=Utterance(
                        id=f"{pid}/corrupt",
                        text=text,
                        audio=corrupt,
                        meta={"voice": voice, "noise": noise, "snr_db": float(snr_db)},
                    ),
                    meta={
                        "generator": "noise_pairs",
                        "seed": [int(seed), i],
                        "speech_span": [span.start, span.stop],
                        "measured_snr_db": round(measured, 6),
                    },
                )
            )
        return pairs, {"versions": _versions(tts)}

    return cached_stimulus_set("noise_pairs", params, build)


def voice_pairs(texts: Sequence[str], voice_a: str, voice_b: str) -> StimulusSet:
    """``voice_a`` (clean) vs ``voice_b`` (corrupt) speaking each text."""
    texts = _check_texts(texts)
    if voice_a == voice_b:
        raise ValueError(f"voice_a and voice_b are both {voice_a!r}")
    params = {"texts": texts, "voice_a": voice_a, "voice_b": voice_b}

    def build():
        a, b = _voice(voice_a), _voice(voice_b)
        pairs = []
        for i, text in enumerate(texts):
            pid = f"voice-{voice_a}-vs-{voice_b}/{i:04d}"
            pairs.append(
                Pair(
                    id=pid,
                    attribute="voice",
                    level=voice_b,
                    clean=Utterance(
                        id=f"{pid}/clean",
                        text=text,
                        audio=a.synthesize(text),
                        meta={"voice": voice_a},
                    ),
                    corrupt=Utterance(
                        id=f"{pid}/corrupt",
                        text=text,
                        audio=b.synthesize(text),
                        meta={"voice": voice_b},
                    ),
                    meta={"generator": "voice_pairs"},
                )
            )
        return pairs, {"versions": _versions(a, b)}

    return cached_stimulus_set("voice_pairs", params, build)


def speed_pairs(texts: Sequence[str], factor: float) -> StimulusSet:
    """Piper at natural speed (clean) vs ``factor`` times faster (``length_scale = 1/factor``)."""
    texts = _check_texts(texts)
    if not factor > 0 or factor == 1.0:
        raise ValueError(f"speed factor must be positive and not 1, got {factor}")
    params = {"texts": texts, "factor": float(factor)}

    def build():
        natural, changed = _piper(1.0), _piper(1.0 / factor)
        pairs = []
        for i, text in enumerate(texts):
            pid = f"speed-x{factor:g}/{i:04d}"
            pairs.append(
                Pair(
                    id=pid,
                    attribute="speed",
                    level=float(factor),
                    clean=Utterance(id=f"{pid}/clean", text=text, audio=natural.synthesize(text)),
                    corrupt=Utterance(
                        id=f"{pid}/corrupt",
                        text=text,
                        audio=changed.synthesize(text),
                        meta={"length_scale": 1.0 / factor},
                    ),
                    meta={"generator": "speed_pairs"},
                )
            )
        return pairs, {"versions": _versions(natural)}

    return cached_stimulus_set("speed_pairs", params, build)
