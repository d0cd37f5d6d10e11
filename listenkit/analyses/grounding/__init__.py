"""E2 / E5: how much a decision flows through the audio versus the text stream.

``margins`` (conflict margins, Text Dominance Ratio), ``whisper`` (the gc sweep on
Whisper's decoder), ``audio_lm`` (the gc sweep on an audio language model's LM)."""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)

if TYPE_CHECKING:  # the public names (read by lazy_exports, type checkers and IDEs)
    from listenkit.analyses.grounding.audio_lm import RemoteUnavailableError, lm_grounding_sweep
    from listenkit.analyses.grounding.margins import conflict_margins, text_dominance_ratio
    from listenkit.analyses.grounding.whisper import (
        AUDIO_STREAM,
        TEXT_STREAM,
        GroundingSweep,
        grounding_sweep,
    )
