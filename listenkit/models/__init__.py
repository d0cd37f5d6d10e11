"""Stage 1, models: load real weights offline, validate audio, wrap them for the engine.

Whisper from the embedded CTranslate2 packages (``load_model``), openai-whisper
checkpoints, transformers directories; Qwen2-Audio from a local checkpoint.
"""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

_EXPORTS = {
    "MODEL_SAMPLE_RATE": "listenkit.models.audio",
    "AudioError": "listenkit.models.audio",
    "as_waveform": "listenkit.models.audio",
    "CacheWarning": "listenkit.models.cache",
    "cache_root": "listenkit.models.cache",
    "CT2FormatError": "listenkit.models.ctranslate2",
    "ModelNotAvailableError": "listenkit.models.loading",
    "known_model_names": "listenkit.models.loading",
    "load_model": "listenkit.models.loading",
    "SpeechModel": "listenkit.models.speech_model",
    "AudioLM": "listenkit.models.qwen2_audio",
    "load_qwen2_audio": "listenkit.models.qwen2_audio",
    "tiny_qwen2_audio": "listenkit.models.qwen2_audio",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "MODEL_SAMPLE_RATE",
    "AudioError",
    "AudioLM",
    "CT2FormatError",
    "CacheWarning",
    "ModelNotAvailableError",
    "SpeechModel",
    "as_waveform",
    "cache_root",
    "known_model_names",
    "load_model",
    "load_qwen2_audio",
    "tiny_qwen2_audio",
]

if TYPE_CHECKING:
    from listenkit.models.audio import MODEL_SAMPLE_RATE, AudioError, as_waveform
    from listenkit.models.cache import CacheWarning, cache_root
    from listenkit.models.ctranslate2 import CT2FormatError
    from listenkit.models.loading import ModelNotAvailableError, known_model_names, load_model
    from listenkit.models.qwen2_audio import AudioLM, load_qwen2_audio, tiny_qwen2_audio
    from listenkit.models.speech_model import SpeechModel
