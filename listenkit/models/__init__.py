"""Stage 1, models: load real weights offline, validate audio, wrap them for the engine.

Whisper from the embedded CTranslate2 packages (``load_model``), openai-whisper
checkpoints, transformers directories; Qwen2-Audio from a local checkpoint.
"""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)

if TYPE_CHECKING:  # the public names (read by lazy_exports, type checkers and IDEs)
    from listenkit.models.audio import MODEL_SAMPLE_RATE, AudioError, as_waveform
    from listenkit.models.cache import CacheWarning, cache_root
    from listenkit.models.ctranslate2 import CT2FormatError
    from listenkit.models.loading import ModelNotAvailableError, known_model_names, load_model
    from listenkit.models.qwen2_audio import AudioLM, load_qwen2_audio, tiny_qwen2_audio
    from listenkit.models.speech_model import SpeechModel
