"""Stimulus families: named recipes for minimal-pair and conflict sets.

A pair-family spec is a mapping with ``generator`` (``noise_pairs``,
``praat_voice_pairs``, ``voice_pairs`` or ``speed_pairs``) and that generator's
parameters; a conflict-family spec has
``voice`` and optionally ``noise`` and ``snr_db`` (added to every audio of the set).
``DEFAULT_FAMILIES`` and ``CONFLICT_FAMILIES`` are the ones the claims suite
pre-registers (``claims/preregistration.toml``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from listenkit.stimuli.conflict import conflict_stimuli, noisy_conflicts
from listenkit.stimuli.pairs import (
    aligned_voice_pairs,
    noise_pairs,
    praat_voice_pairs,
    speed_pairs,
    voice_pairs,
)
from listenkit.stimuli.store import StimulusSet
from listenkit.stimuli.textbank import textbank
from listenkit.stimuli.types import ConflictStimulus

__all__ = [
    "CONFLICT_FAMILIES",
    "DEFAULT_FAMILIES",
    "UNALIGNED_FAMILIES",
    "conflict_family",
    "family_pairs",
]

DEFAULT_FAMILIES: dict[str, dict[str, Any]] = {
    "noise": {
        "generator": "noise_pairs",
        "noise": "white",
        "snr_db": 0.0,
        "voice": "piper:joe",
        "shared_level": True,
    },
    "voice": {
        "generator": "aligned_voice_pairs",
        "voice_a": "piper:joe",
        "voice_b": "espeak-ng:en-gb-scotland",
        "anchor_s": 0.04,
        "factor_range": [0.1, 4.0],
    },
    "voice-gender": {
        "generator": "praat_voice_pairs",
        "voice": "piper:joe",
        "formant_shift_ratio": 1.2,
        "new_pitch_median": 200.0,
        "pitch_range_factor": 1.0,
    },
    "voice-unaligned": {"generator": "voice_pairs", "voice_a": "piper:joe", "voice_b": "flite:slt"},
}
UNALIGNED_FAMILIES = ("voice-unaligned",)  # exploratory: patched frames hold other speech

CONFLICT_FAMILIES: dict[str, dict[str, Any]] = {
    "conflict": {"voice": "piper:joe"},
    "conflict-noisy": {"voice": "piper:joe", "noise": "white", "snr_db": 5.0},
}


SENTENCE_ORDERS = ("bank", "v3-fresh-first")


def sentence_order(order: str = "bank") -> list[str]:
    """The text bank in a family's pre-registered order: ``bank`` (file order, v2) or
    ``v3-fresh-first``: the sentences no v2 claim used (bank[128:206]), then the 16 that
    only the head-screen benchmark used (bank[206:]), then v2's (bank[:128])."""
    bank = list(textbank())
    if order == "bank":
        return bank
    if order == "v3-fresh-first":
        return bank[128:206] + bank[206:] + bank[:128]
    raise ValueError(f"unknown sentence order {order!r}; use one of {SENTENCE_ORDERS}")


def family_pairs(spec: Mapping[str, Any], n: int, *, seed: int) -> StimulusSet:
    """The first ``n`` sentences (in the spec's ``sentence_order``, default the bank's)
    as a minimal-pair set of this family."""
    bank = sentence_order(spec.get("sentence_order", "bank"))
    if not 0 < n <= len(bank):
        raise ValueError(f"n must be 1..{len(bank)} (text bank size), got {n}")
    texts = bank[:n]
    generator = spec["generator"]
    if generator == "noise_pairs":
        return noise_pairs(
            texts,
            spec["snr_db"],
            spec["noise"],
            seed,
            voice=spec["voice"],
            shared_level=spec.get("shared_level", False),
        )
    if generator == "voice_pairs":
        return voice_pairs(texts, spec["voice_a"], spec["voice_b"])
    if generator == "aligned_voice_pairs":
        return aligned_voice_pairs(
            texts,
            spec["voice_a"],
            spec["voice_b"],
            anchor_s=spec["anchor_s"],
            factor_range=tuple(spec["factor_range"]),
        )
    if generator == "praat_voice_pairs":
        return praat_voice_pairs(
            texts,
            voice=spec["voice"],
            formant_shift_ratio=spec["formant_shift_ratio"],
            new_pitch_median=spec["new_pitch_median"],
            pitch_range_factor=spec["pitch_range_factor"],
        )
    if generator == "speed_pairs":
        return speed_pairs(texts, spec["factor"])
    raise ValueError(f"unknown generator {generator!r}")


def conflict_family(
    spec: Mapping[str, Any],
    per_flip_type: int,
    *,
    encode: Callable[[str], list[int]],
    tokenizer_name: str,
    seed: int,
) -> tuple[StimulusSet, list[ConflictStimulus]]:
    """Conflicts whose two texts line up under ``encode`` (a model's ``text_tokens``),
    ``per_flip_type`` of each flip type; with ``noise`` in the spec, noisy copies.

    Returns the cached clean set (manifest, drop counts) and the stimuli to run.
    """
    clean = conflict_stimuli(
        per_flip_type=per_flip_type,
        encode=encode,
        tokenizer_name=tokenizer_name,
        voice=spec["voice"],
        seed=seed,
    )
    stimuli = list(clean)
    if spec.get("noise"):
        stimuli = noisy_conflicts(stimuli, spec["snr_db"], noise=spec["noise"], seed=seed)
    return clean, stimuli
