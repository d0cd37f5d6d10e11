"""Stimuli: minimal pairs and audio-text conflicts from real TTS and real speech.

Everything is 16 kHz mono float32, deterministic for a given seed, and cached on
disk with a JSONL manifest (see ``listenkit.stimuli.store``).
"""

from listenkit.stimuli.conflict import FlipAlignment, align_flip, conflict_stimuli
from listenkit.stimuli.loaders import (
    load_alme_jsonl,
    load_audio_file,
    load_librispeech,
    load_wav_txt_folder,
)
from listenkit.stimuli.noise import make_noise, measure_snr, mix_at_snr, speech_span
from listenkit.stimuli.pairs import noise_pairs, speed_pairs, voice_pairs
from listenkit.stimuli.real_speech import pocketsphinx_clips
from listenkit.stimuli.store import StimulusSet
from listenkit.stimuli.textbank import TEXTBANK_VERSION, textbank
from listenkit.stimuli.tts import (
    EspeakVoice,
    FliteVoice,
    PiperVoice,
    TTSUnavailableError,
    get_voice,
    normalize_loudness,
)
from listenkit.stimuli.types import ConflictStimulus, Pair, Question, Utterance

__all__ = [
    "TEXTBANK_VERSION",
    "ConflictStimulus",
    "EspeakVoice",
    "FlipAlignment",
    "FliteVoice",
    "Pair",
    "PiperVoice",
    "Question",
    "StimulusSet",
    "TTSUnavailableError",
    "Utterance",
    "align_flip",
    "conflict_stimuli",
    "get_voice",
    "load_alme_jsonl",
    "load_audio_file",
    "load_librispeech",
    "load_wav_txt_folder",
    "make_noise",
    "measure_snr",
    "mix_at_snr",
    "noise_pairs",
    "normalize_loudness",
    "pocketsphinx_clips",
    "speech_span",
    "speed_pairs",
    "textbank",
    "voice_pairs",
]
