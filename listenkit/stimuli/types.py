"""Stimulus data types: ``Utterance``, ``Pair``, ``Question``, ``ConflictStimulus``.

All are frozen, keyword-only dataclasses. Audio is 16 kHz mono float32, validated
on construction and stored read-only. ``to_dict``/``from_dict`` round-trip through
JSON exactly: audio is inlined as base64 of little-endian float32 bytes (or left out
and referenced by its sha256, as manifests do).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from listenkit.models.audio import MODEL_SAMPLE_RATE, as_waveform, resample

__all__ = ["ConflictStimulus", "Pair", "Question", "Utterance", "audio_sha256"]

FLIP_TYPES = ("adjective_swap", "negation_add", "negation_remove", "number_swap", "time_swap")


def audio_sha256(audio: np.ndarray) -> str:
    """sha256 of the waveform's little-endian float32 bytes."""
    return hashlib.sha256(np.ascontiguousarray(audio, dtype="<f4").tobytes()).hexdigest()


def _encode_audio(audio: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(audio, dtype="<f4").tobytes()).decode("ascii")


def _decode_audio(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def _frozen_audio(audio: Any, what: str) -> np.ndarray:
    wave = np.array(as_waveform(audio, what=what), dtype=np.float32, copy=True)
    wave.flags.writeable = False
    return wave


def _frozen_meta(meta: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(meta or {}))


@dataclass(frozen=True, kw_only=True, eq=False)
class Utterance:
    """One spoken sentence: ``text`` and its 16 kHz mono float32 ``audio``."""

    id: str
    text: str
    audio: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio", _frozen_audio(self.audio, f"utterance {self.id!r}"))
        object.__setattr__(self, "meta", _frozen_meta(self.meta))

    @property
    def duration_s(self) -> float:
        return self.audio.size / MODEL_SAMPLE_RATE

    @property
    def sha256(self) -> str:
        return audio_sha256(self.audio)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Utterance)
            and (self.id, self.text, dict(self.meta)) == (other.id, other.text, dict(other.meta))
            and np.array_equal(self.audio, other.audio)
        )

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self, *, inline_audio: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "sha256": self.sha256,
            "n_samples": int(self.audio.size),
            "meta": dict(self.meta),
        }
        if inline_audio:
            out["audio_f32le_b64"] = _encode_audio(self.audio)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], audio: np.ndarray | None = None) -> Utterance:
        """Inverse of ``to_dict``; pass ``audio`` when it was not inlined."""
        if audio is None:
            if "audio_f32le_b64" not in data:
                raise ValueError(f"utterance {data.get('id')!r}: no inline audio and none given")
            audio = _decode_audio(data["audio_f32le_b64"])
        utterance = cls(id=data["id"], text=data["text"], audio=audio, meta=data.get("meta", {}))
        if "sha256" in data and utterance.sha256 != data["sha256"]:
            raise ValueError(
                f"utterance {data['id']!r}: audio sha256 {utterance.sha256[:12]}... does not "
                f"match the recorded {data['sha256'][:12]}..."
            )
        return utterance

    @classmethod
    def from_array(
        cls,
        audio: np.ndarray,
        text: str,
        *,
        id: str,
        sample_rate: int = MODEL_SAMPLE_RATE,
        meta: Mapping[str, Any] | None = None,
    ) -> Utterance:
        """Bring your own audio: stereo ``[n, channels]`` is downmixed and another sample
        rate resampled to 16 kHz, both recorded in ``meta``."""
        meta = dict(meta or {})
        audio = np.asarray(audio)
        if audio.ndim == 2:
            meta["downmixed_from_channels"] = int(audio.shape[1])
            audio = audio.mean(axis=1)
        if np.issubdtype(audio.dtype, np.floating) and sample_rate != MODEL_SAMPLE_RATE:
            as_waveform(audio, what=f"utterance {id!r}")  # reject NaN/empty before resampling
            meta["resampled_from_hz"] = int(sample_rate)
            audio = resample(audio, sample_rate, MODEL_SAMPLE_RATE)
        return cls(id=id, text=text, audio=audio, meta=meta)


@dataclass(frozen=True, kw_only=True, eq=False)
class Pair:
    """A minimal pair: the same ``text`` spoken twice, differing in one ``attribute``.

    ``clean`` is the reference condition, ``corrupt`` the changed one (e.g.
    attribute ``"noise"``, level ``"white@0dB"``).
    """

    id: str
    clean: Utterance
    corrupt: Utterance
    attribute: str
    level: str | float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.clean.text != self.corrupt.text:
            raise ValueError(
                f"pair {self.id!r}: texts differ ({self.clean.text!r} vs {self.corrupt.text!r}); "
                "a minimal pair shares its text exactly"
            )
        object.__setattr__(self, "meta", _frozen_meta(self.meta))

    @property
    def text(self) -> str:
        return self.clean.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pair) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self, *, inline_audio: bool = True) -> dict[str, Any]:
        return {
            "id": self.id,
            "attribute": self.attribute,
            "level": self.level,
            "meta": dict(self.meta),
            "clean": self.clean.to_dict(inline_audio=inline_audio),
            "corrupt": self.corrupt.to_dict(inline_audio=inline_audio),
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        clean_audio: np.ndarray | None = None,
        corrupt_audio: np.ndarray | None = None,
    ) -> Pair:
        return cls(
            id=data["id"],
            attribute=data["attribute"],
            level=data.get("level"),
            meta=data.get("meta", {}),
            clean=Utterance.from_dict(data["clean"], clean_audio),
            corrupt=Utterance.from_dict(data["corrupt"], corrupt_audio),
        )

    @classmethod
    def from_arrays(
        cls,
        clean_audio: np.ndarray,
        corrupt_audio: np.ndarray,
        text: str,
        *,
        sample_rate: int = MODEL_SAMPLE_RATE,
        id: str,
        attribute: str = "custom",
        level: str | float | None = None,
    ) -> Pair:
        """A pair from your own waveforms (resampled / downmixed as ``Utterance.from_array``)."""
        return cls(
            id=id,
            attribute=attribute,
            level=level,
            clean=Utterance.from_array(
                clean_audio, text, id=f"{id}/clean", sample_rate=sample_rate
            ),
            corrupt=Utterance.from_array(
                corrupt_audio, text, id=f"{id}/corrupt", sample_rate=sample_rate
            ),
        )


@dataclass(frozen=True, kw_only=True)
class Question:
    """ALME's two-choice question about the flipped fact."""

    question_text: str
    choices: tuple[str, str]
    correct_answer: str
    flip_type: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if len(self.choices) != 2:
            raise ValueError(f"a question has two choices, got {self.choices}")
        if self.correct_answer not in self.choices:
            raise ValueError(f"correct answer {self.correct_answer!r} not in {self.choices}")
        if self.flip_type not in FLIP_TYPES:
            raise ValueError(f"unknown flip_type {self.flip_type!r}; known: {FLIP_TYPES}")


@dataclass(frozen=True, kw_only=True, eq=False)
class ConflictStimulus:
    """An ALME-schema audio-text conflict: audio of ``ref_text``; text channel ``conflict_text``.

    ``ref_audio`` speaks ``ref_text``; ``conflict_audio`` speaks ``conflict_text`` (the
    audio-stream source in interchange interventions). ``audio_path`` is kept for real
    ALME items (relative to a Common Voice root).
    """

    stimulus_id: str
    language: str
    ref_text: str
    conflict_text: str
    question: Question
    ref_audio: Utterance | None = None
    conflict_audio: Utterance | None = None
    audio_path: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ref_text == self.conflict_text:
            raise ValueError(f"stimulus {self.stimulus_id!r}: ref_text equals conflict_text")
        for utt, text, role in (
            (self.ref_audio, self.ref_text, "ref_audio"),
            (self.conflict_audio, self.conflict_text, "conflict_audio"),
        ):
            if utt is not None and utt.text != text:
                raise ValueError(
                    f"stimulus {self.stimulus_id!r}: {role} speaks {utt.text!r}, expected {text!r}"
                )
        object.__setattr__(self, "meta", _frozen_meta(self.meta))

    @property
    def flip_type(self) -> str:
        return self.question.flip_type

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConflictStimulus) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self, *, inline_audio: bool = True) -> dict[str, Any]:
        """ALME's JSONL fields plus listenkit's audio for both texts."""
        q = self.question
        return {
            "stimulus_id": self.stimulus_id,
            "language": self.language,
            "audio_path": self.audio_path,
            "ref_text": self.ref_text,
            "conflict_text": self.conflict_text,
            "question": {
                "question_text": q.question_text,
                "choices": list(q.choices),
                "correct_answer": q.correct_answer,
                "flip_type": q.flip_type,
            },
            "meta": dict(self.meta),
            "ref_audio": None
            if self.ref_audio is None
            else self.ref_audio.to_dict(inline_audio=inline_audio),
            "conflict_audio": None
            if self.conflict_audio is None
            else self.conflict_audio.to_dict(inline_audio=inline_audio),
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        ref_audio: np.ndarray | None = None,
        conflict_audio: np.ndarray | None = None,
    ) -> ConflictStimulus:
        q = data["question"]
        ref = data.get("ref_audio")
        conflict = data.get("conflict_audio")
        return cls(
            stimulus_id=data["stimulus_id"],
            language=data["language"],
            ref_text=data["ref_text"],
            conflict_text=data["conflict_text"],
            audio_path=data.get("audio_path"),
            question=Question(
                question_text=q["question_text"],
                choices=tuple(q["choices"]),
                correct_answer=q["correct_answer"],
                flip_type=q["flip_type"],
            ),
            meta=data.get("meta", {}),
            ref_audio=None if ref is None else Utterance.from_dict(ref, ref_audio),
            conflict_audio=None
            if conflict is None
            else Utterance.from_dict(conflict, conflict_audio),
        )
