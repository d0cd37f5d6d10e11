"""listenkit: executable hypothesis tests for claims about speech models."""

from listenkit.audio import AudioError
from listenkit.cache import CacheWarning
from listenkit.ctranslate2_whisper import CT2FormatError
from listenkit.grounding_sweep import GroundingSweep, grounding_sweep
from listenkit.loading import ModelNotAvailableError, known_model_names, load_model
from listenkit.sites import COMPONENTS, DegenerateSiteWarning, Site, SiteError
from listenkit.speech_model import SpeechModel
from listenkit.sweep_result import Sweep
from listenkit.sweeping import sweep

__all__ = [
    "COMPONENTS",
    "AudioError",
    "CT2FormatError",
    "CacheWarning",
    "DegenerateSiteWarning",
    "GroundingSweep",
    "ModelNotAvailableError",
    "Site",
    "SiteError",
    "SpeechModel",
    "Sweep",
    "grounding_sweep",
    "known_model_names",
    "load_model",
    "sweep",
]
__version__ = "0.1.0"
