"""listenkit: executable hypothesis tests for claims about speech models."""

from listenkit.audio import AudioError
from listenkit.cache import CacheWarning
from listenkit.ctranslate2_whisper import CT2FormatError
from listenkit.loading import ModelNotAvailableError, known_model_names, load_model
from listenkit.speech_model import SpeechModel

__all__ = [
    "AudioError",
    "CT2FormatError",
    "CacheWarning",
    "ModelNotAvailableError",
    "SpeechModel",
    "known_model_names",
    "load_model",
]
__version__ = "0.1.0"
