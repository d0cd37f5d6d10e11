"""Stimulus families: named recipes for minimal-pair sets.

A family spec is a mapping with ``generator`` (``noise_pairs``, ``voice_pairs`` or
``speed_pairs``) and that generator's parameters; ``DEFAULT_FAMILIES`` are the ones
the claims suite pre-registers (``claims/preregistration.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from listenkit.stimuli.pairs import noise_pairs, speed_pairs, voice_pairs
from listenkit.stimuli.store import StimulusSet
from listenkit.stimuli.textbank import textbank

__all__ = ["DEFAULT_FAMILIES", "family_pairs"]

DEFAULT_FAMILIES: dict[str, dict[str, Any]] = {
    "noise": {"generator": "noise_pairs", "noise": "white", "snr_db": 0.0, "voice": "piper:joe"},
    "voice": {"generator": "voice_pairs", "voice_a": "piper:joe", "voice_b": "flite:slt"},
}


def family_pairs(spec: Mapping[str, Any], n: int, *, seed: int) -> StimulusSet:
    """The first ``n`` sentences of the text bank as a minimal-pair set of this family."""
    bank = textbank()
    if not 0 < n <= len(bank):
        raise ValueError(f"n must be 1..{len(bank)} (text bank size), got {n}")
    texts = list(bank[:n])
    generator = spec["generator"]
    if generator == "noise_pairs":
        return noise_pairs(texts, spec["snr_db"], spec["noise"], seed, voice=spec["voice"])
    if generator == "voice_pairs":
        return voice_pairs(texts, spec["voice_a"], spec["voice_b"])
    if generator == "speed_pairs":
        return speed_pairs(texts, spec["factor"])
    raise ValueError(f"unknown generator {generator!r}")
