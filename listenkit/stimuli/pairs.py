"""Minimal-pair generators: the same text, one attribute changed.

- ``noise_pairs``: clean TTS vs the same audio plus seeded noise at an exact SNR.
- ``voice_pairs``: one voice vs another (accent / speaker); different timing, so
  frame-by-frame patching splices frames of different speech (unaligned).
- ``praat_voice_pairs``: one Piper utterance vs the same utterance with another
  speaker's formants and pitch imposed by Praat at identical timing (aligned).
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
from listenkit.stimuli.noise import (
    NOISE_KINDS,
    fit_to_unit_range,
    make_noise,
    mix_at_snr,
    speech_span,
)
from listenkit.stimuli.store import StimulusSet, cached_stimulus_set
from listenkit.stimuli.tts import PiperVoice, get_voice
from listenkit.stimuli.types import Pair, Utterance

__all__ = [
    "aligned_voice_pairs",
    "noise_pairs",
    "noisy_pair",
    "praat_voice_pairs",
    "speed_pairs",
    "voice_pairs",
]

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


def noisy_pair(
    pid: str,
    text: str,
    clean: np.ndarray,
    snr_db: float,
    noise: str,
    seed: Sequence[int],
    *,
    shared_level: bool = True,
    babble_clips: Sequence[np.ndarray] = (),
    meta: dict | None = None,
) -> Pair:
    """``clean`` (16 kHz speech) and the same plus ``noise`` at ``snr_db`` over its speech
    span (noise drawn from ``default_rng(seed)``); a mixture whose peak would pass 1 is
    scaled as a whole by ``level = 1 / peak``, and with ``shared_level`` the clean side
    by the same level, so that the pair differs only by the noise."""
    rng = np.random.default_rng(list(seed))
    span = speech_span(clean)
    mixture, measured = mix_at_snr(
        clean, make_noise(noise, clean.size, rng, babble_clips=babble_clips), snr_db, span=span
    )
    corrupt, level = fit_to_unit_range(mixture)
    if shared_level:
        clean = (clean * np.float32(level)).astype(np.float32)
    meta = dict(meta or {})
    return Pair(
        id=pid,
        attribute="noise",
        level=f"{noise}@{snr_db:g}dB",
        clean=Utterance(id=f"{pid}/clean", text=text, audio=clean, meta=meta),
        corrupt=Utterance(
            id=f"{pid}/corrupt",
            text=text,
            audio=corrupt,
            meta=meta | {"noise": noise, "snr_db": float(snr_db)},
        ),
        meta={
            "generator": "noise_pairs",
            "seed": [int(x) for x in seed],
            "speech_span": [span.start, span.stop],
            "measured_snr_db": round(measured, 6),
            "mixture_level": round(level, 6),
        },
    )


def noise_pairs(
    texts: Sequence[str],
    snr_db: float,
    noise: str = "white",
    seed: int = 0,
    *,
    voice: str = DEFAULT_VOICE,
    shared_level: bool = False,
) -> StimulusSet:
    """Clean speech vs the same speech plus ``noise`` at ``snr_db`` over the speech span.

    A mixture whose peak would pass 1 is scaled as a whole by ``level = 1 / peak``.
    ``shared_level=True`` scales the clean utterance by the same ``level``, so that a
    pair differs only by the noise (``corrupt - clean = level * noise``); by default
    (pre-registration v2) only the corrupt side is scaled, and a pair also differs by
    that gain. Babble is the sum of six real LibriVox talkers (pocketsphinx test clips).
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
    if shared_level:  # only when asked: v2's sets keep their parameters and manifests
        params["shared_level"] = True

    def build():
        tts = _voice(voice)
        clips = _babble_clips() if noise == "babble" else ()
        pairs = [
            noisy_pair(f"noise-{noise}-{snr_db:g}dB/{i:04d}", text, tts.synthesize(text),
                       snr_db, noise, [int(seed), i], shared_level=shared_level,
                       babble_clips=clips, meta={"voice": voice})
            for i, text in enumerate(texts)
        ]  # fmt: skip
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


def praat_voice_pairs(
    texts: Sequence[str],
    *,
    voice: str = DEFAULT_VOICE,
    formant_shift_ratio: float = 1.2,
    new_pitch_median: float = 200.0,
    pitch_range_factor: float = 1.0,
) -> StimulusSet:
    """``voice`` (clean) vs the same audio with Praat's "Change gender" (formants times
    ``formant_shift_ratio``, pitch median ``new_pitch_median`` Hz, range times
    ``pitch_range_factor``, duration factor 1; ``listenkit.stimuli.prosody``).

    Both utterances have exactly the same length; each pair's meta records the
    alignment check (equal lengths, correlation of the 20-ms RMS envelopes)."""
    from listenkit.stimuli.prosody import PRAAT_SEED, change_voice, envelope_correlation

    texts = _check_texts(texts)
    params = {
        "texts": texts,
        "voice": voice,
        "formant_shift_ratio": float(formant_shift_ratio),
        "new_pitch_median": float(new_pitch_median),
        "pitch_range_factor": float(pitch_range_factor),
        "praat_seed": PRAAT_SEED,  # Praat's resynthesis is seeded per call (cache key)
    }
    change = {k: v for k, v in params.items() if k not in ("texts", "voice", "praat_seed")}

    def build():
        import parselmouth

        tts = _voice(voice)
        pairs = []
        for i, text in enumerate(texts):
            clean = tts.synthesize(text)
            corrupt = change_voice(clean, **change, seed=PRAAT_SEED)
            pid = f"praat-voice-f{formant_shift_ratio:g}-p{new_pitch_median:g}/{i:04d}"
            pairs.append(
                Pair(
                    id=pid,
                    attribute="voice",
                    level=f"praat:f{formant_shift_ratio:g},p{new_pitch_median:g}",
                    clean=Utterance(
                        id=f"{pid}/clean", text=text, audio=clean, meta={"voice": voice}
                    ),
                    corrupt=Utterance(
                        id=f"{pid}/corrupt",
                        text=text,
                        audio=corrupt,
                        meta={"voice": voice, "praat_change_gender": change},
                    ),
                    meta={
                        "generator": "praat_voice_pairs",
                        "alignment": {
                            "samples_clean": int(clean.size),
                            "samples_corrupt": int(corrupt.size),
                            "envelope_correlation": round(envelope_correlation(clean, corrupt), 6),
                        },
                    },
                )
            )
        versions = _versions(tts) | {"praat-parselmouth": parselmouth.__version__}
        return pairs, {"versions": versions}

    return cached_stimulus_set("praat_voice_pairs", params, build)


def aligned_voice_pairs(
    texts: Sequence[str],
    voice_a: str = DEFAULT_VOICE,
    voice_b: str = "espeak-ng:en-gb-scotland",
    *,
    anchor_s: float = 0.04,
    factor_range: tuple[float, float] = (0.1, 4.0),
) -> StimulusSet:
    """``voice_a`` (clean) vs ``voice_b`` warped onto ``voice_a``'s timing (DTW on MFCCs,
    a Praat duration tier, overlap-add; ``listenkit.stimuli.time_align``): two voices
    (accents) speaking the same words at the same times, equal lengths, equal RMS. Each
    pair's meta records the alignment check (envelope correlation, warped and not)."""
    from listenkit.stimuli.prosody import PRAAT_SEED
    from listenkit.stimuli.time_align import warp_onto

    texts = _check_texts(texts)
    low, high = (float(x) for x in factor_range)
    params = {"texts": texts, "voice_a": voice_a, "voice_b": voice_b, "anchor_s": float(anchor_s),
              "factor_range": [low, high], "praat_seed": PRAAT_SEED}  # fmt: skip

    def build():
        import parselmouth

        tts_a, tts_b = _voice(voice_a), _voice(voice_b)
        pairs = []
        for i, text in enumerate(texts):
            clean = tts_a.synthesize(text)
            corrupt, check = warp_onto(clean, tts_b.synthesize(text), anchor_s=anchor_s,
                                       factor_range=(low, high))  # fmt: skip
            pid = f"aligned-voice-{voice_b.replace(':', '-')}/{i:04d}"
            pairs.append(
                Pair(
                    id=pid,
                    attribute="voice",
                    level=f"{voice_b} on {voice_a}'s timing",
                    clean=Utterance(
                        id=f"{pid}/clean", text=text, audio=clean, meta={"voice": voice_a}
                    ),
                    corrupt=Utterance(
                        id=f"{pid}/corrupt",
                        text=text,
                        audio=corrupt,
                        meta={"voice": voice_b, "warped_onto": voice_a},
                    ),
                    meta={"generator": "aligned_voice_pairs", "alignment": check},
                )
            )
        versions = _versions(tts_a, tts_b) | {"praat-parselmouth": parselmouth.__version__}
        return pairs, {"versions": versions}

    return cached_stimulus_set("aligned_voice_pairs", params, build)


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
