"""E2 / E5: how much a decision flows through the audio versus the text stream.

``margins`` (conflict margins, Text Dominance Ratio), ``whisper`` (the gc sweep on
Whisper's decoder), ``audio_lm`` (the gc sweep on an audio language model's LM)."""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

_EXPORTS = {
    "conflict_margins": "listenkit.analyses.grounding.margins",
    "text_dominance_ratio": "listenkit.analyses.grounding.margins",
    "AUDIO_STREAM": "listenkit.analyses.grounding.whisper",
    "TEXT_STREAM": "listenkit.analyses.grounding.whisper",
    "GroundingSweep": "listenkit.analyses.grounding.whisper",
    "grounding_sweep": "listenkit.analyses.grounding.whisper",
    "RemoteUnavailableError": "listenkit.analyses.grounding.audio_lm",
    "lm_grounding_sweep": "listenkit.analyses.grounding.audio_lm",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "AUDIO_STREAM",
    "TEXT_STREAM",
    "GroundingSweep",
    "RemoteUnavailableError",
    "conflict_margins",
    "grounding_sweep",
    "lm_grounding_sweep",
    "text_dominance_ratio",
]

if TYPE_CHECKING:
    from listenkit.analyses.grounding.audio_lm import RemoteUnavailableError, lm_grounding_sweep
    from listenkit.analyses.grounding.margins import conflict_margins, text_dominance_ratio
    from listenkit.analyses.grounding.whisper import (
        AUDIO_STREAM,
        TEXT_STREAM,
        GroundingSweep,
        grounding_sweep,
    )
