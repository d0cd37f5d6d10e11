"""Stimuli: speech from real TTS voices and real recordings."""

from listenkit.stimuli.tts import PiperVoice, TTSUnavailableError, normalize_loudness

__all__ = ["PiperVoice", "TTSUnavailableError", "normalize_loudness"]
