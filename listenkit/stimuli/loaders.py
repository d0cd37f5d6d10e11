"""Load your own speech: audio files, ALME JSONL, LibriSpeech folders, wav + txt folders.

Every loader returns 16 kHz mono float32 ``Utterance``s / ``ConflictStimulus``es.
Other sample rates are resampled and multi-channel audio is downmixed, both recorded
in ``meta``; unreadable, empty or non-finite audio is an ``AudioError`` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from listenkit.models.audio import AudioError
from listenkit.stimuli.types import ConflictStimulus, Question, Utterance

__all__ = [
    "load_alme_jsonl",
    "load_audio_file",
    "load_labelled_folder",
    "load_librispeech",
    "load_wav_txt_folder",
]


def load_audio_file(path: str | Path, *, text: str = "", id: str | None = None) -> Utterance:
    """Read any file libsndfile can (wav, flac, mp3, ogg, ...) as a 16 kHz mono Utterance."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: unreadable or corrupt audio ({err})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    mono = audio[:, 0] if audio.shape[1] == 1 else audio
    meta = {"path": str(path)}
    try:
        return Utterance.from_array(
            mono, text, id=id or path.stem, sample_rate=int(rate), meta=meta
        )
    except AudioError as err:
        raise AudioError(f"{path}: {err}") from None


def load_alme_jsonl(
    jsonl: str | Path, common_voice_root: str | Path | None = None, *, language: str | None = None
) -> list[ConflictStimulus]:
    """Real ALME items: each line has stimulus_id, language, audio_path (relative to a
    Common Voice root), ref_text, conflict_text and question {question_text, choices,
    correct_answer, flip_type}. The Common Voice clip becomes ``ref_audio``. ALME has no
    audio of ``conflict_text``: a record may add ``conflict_audio_path`` (relative to the
    same root), which becomes ``conflict_audio``; without it that stays None."""
    jsonl = Path(jsonl)
    if not jsonl.is_file():
        raise FileNotFoundError(f"ALME file not found: {jsonl}")
    out = []
    for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            q = record["question"]
            if language is not None and record["language"] != language:
                continue
            ref_audio = conflict_audio = None
            if common_voice_root is not None:
                ref_audio = load_audio_file(
                    Path(common_voice_root) / record["audio_path"],
                    text=record["ref_text"],
                    id=f"{record['stimulus_id']}/ref",
                )
                if record.get("conflict_audio_path"):
                    conflict_audio = load_audio_file(
                        Path(common_voice_root) / record["conflict_audio_path"],
                        text=record["conflict_text"],
                        id=f"{record['stimulus_id']}/conflict",
                    )
            out.append(
                ConflictStimulus(
                    stimulus_id=str(record["stimulus_id"]),
                    language=record["language"],
                    ref_text=record["ref_text"],
                    conflict_text=record["conflict_text"],
                    audio_path=record["audio_path"],
                    question=Question(
                        question_text=q["question_text"],
                        choices=tuple(q["choices"]),
                        correct_answer=q["correct_answer"],
                        flip_type=q["flip_type"],
                    ),
                    ref_audio=ref_audio,
                    conflict_audio=conflict_audio,
                    meta={"source": str(jsonl), "line": number},
                )
            )
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"{jsonl}:{number}: not an ALME record ({err!r})") from None
    return out


def _walk(root: Path, pattern: str) -> Iterator[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    yield from sorted(root.rglob(pattern))


def load_librispeech(root: str | Path, *, limit: int | None = None) -> list[Utterance]:
    """A LibriSpeech-style tree: ``*.trans.txt`` lines ``<utt-id> <TRANSCRIPT>`` beside
    ``<utt-id>.flac``."""
    root = Path(root)
    out: list[Utterance] = []
    for trans in _walk(root, "*.trans.txt"):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            out.append(load_audio_file(trans.parent / f"{utt_id}.flac", text=text, id=utt_id))
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise FileNotFoundError(f"no *.trans.txt transcripts under {root}")
    return out


def load_wav_txt_folder(root: str | Path) -> list[Utterance]:
    """A folder (and its subfolders) of ``name.wav`` + ``name.txt`` (the transcript)
    pairs; an utterance's id is its path under ``root`` without the suffix."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    out = []
    wavs = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
    for wav in wavs:
        txt = wav.with_suffix(".txt")
        if not txt.is_file():
            raise FileNotFoundError(f"{wav} has no transcript {txt.name}")
        uid = wav.relative_to(root).with_suffix("").as_posix()
        out.append(load_audio_file(wav, text=txt.read_text(encoding="utf-8").strip(), id=uid))
    if not out:
        raise FileNotFoundError(f"no .wav files under {root}")
    return out


def load_labelled_folder(root: str | Path, classes: Sequence[str] | None = None) -> list[Utterance]:
    """A labelled corpus (e.g. emotional speech for E3): ``root/<class>/<name>.wav``, an
    optional ``<name>.txt`` transcript next to each. ``meta`` gets ``class`` and
    ``label`` (its index in ``classes``; default: the class folders, sorted)."""
    root = Path(root)
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    classes = list(classes) if classes is not None else found
    if not classes:
        raise FileNotFoundError(f"no class folders under {root}")
    missing = [c for c in classes if c not in found]
    if missing:
        raise FileNotFoundError(f"class folders {missing} not found under {root}")
    out = []
    for label, name in enumerate(classes):
        for wav in _walk(root / name, "*.wav"):
            txt = wav.with_suffix(".txt")
            text = txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
            utt = load_audio_file(wav, text=text, id=f"{name}/{wav.stem}")
            out.append(replace(utt, meta={**utt.meta, "class": name, "label": label}))
    if not out:
        raise FileNotFoundError(f"no .wav files under {root}/<class>/")
    return out
