"""Loading users' own audio: files, ALME JSONL, LibriSpeech and wav+txt folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from listenkit import AudioError
from listenkit.stimuli import (
    load_alme_jsonl,
    load_audio_file,
    load_librispeech,
    load_wav_txt_folder,
)


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_wrong_rate_and_stereo_are_converted_and_recorded(tmp_path):
    stereo = np.stack([_tone(1.0, 44_100), _tone(1.0, 44_100)], axis=1)
    soundfile.write(tmp_path / "s.wav", stereo, 44_100)
    utt = load_audio_file(tmp_path / "s.wav", text="tone")
    assert utt.audio.shape == (16_000,)
    assert utt.meta["resampled_from_hz"] == 44_100
    assert utt.meta["downmixed_from_channels"] == 2


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_audio_file(tmp_path / "missing.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match="corrupt"):
        load_audio_file(tmp_path / "corrupt.wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16_000)
    with pytest.raises(AudioError, match="empty"):
        load_audio_file(tmp_path / "empty.wav")
    soundfile.write(
        tmp_path / "nan.wav", np.array([0.0, np.nan], np.float32), 16_000, subtype="FLOAT"
    )
    with pytest.raises(AudioError, match="NaN"):
        load_audio_file(tmp_path / "nan.wav")


def test_librispeech_tree(tmp_path):
    chapter = tmp_path / "LibriSpeech" / "test-clean" / "61" / "70968"
    chapter.mkdir(parents=True)
    for i in range(3):
        soundfile.write(chapter / f"61-70968-000{i}.flac", _tone(0.5 + i / 10, 16_000), 16_000)
    (chapter / "61-70968.trans.txt").write_text(
        "\n".join(f"61-70968-000{i} WORDS NUMBER {i}" for i in range(3)) + "\n"
    )
    utts = load_librispeech(tmp_path / "LibriSpeech")
    assert [u.id for u in utts] == [f"61-70968-000{i}" for i in range(3)]
    assert utts[2].text == "WORDS NUMBER 2"
    assert utts[2].audio.size == 11_200  # 0.7 s


def test_wav_txt_folder(tmp_path):
    soundfile.write(tmp_path / "a.wav", _tone(0.3, 16_000), 16_000)
    (tmp_path / "a.txt").write_text("hello world\n")
    assert load_wav_txt_folder(tmp_path)[0].text == "hello world"
    soundfile.write(tmp_path / "b.wav", _tone(0.3, 16_000), 16_000)
    with pytest.raises(FileNotFoundError, match="no transcript"):
        load_wav_txt_folder(tmp_path)


def test_labelled_folder(tmp_path):
    """A labelled corpus (e.g. a real SER set for E3): class folders -> meta label."""
    from listenkit.stimuli.loaders import load_labelled_folder

    for name in ("happy", "angry"):
        (tmp_path / name).mkdir()
        soundfile.write(tmp_path / name / "x.wav", _tone(0.3, 16_000), 16_000)
    (tmp_path / "angry" / "x.txt").write_text("kids are talking\n")
    utts = load_labelled_folder(tmp_path)
    assert [(u.id, u.meta["class"], u.meta["label"]) for u in utts] == [
        ("angry/x", "angry", 0),
        ("happy/x", "happy", 1),
    ]
    assert utts[0].text == "kids are talking"
    assert load_labelled_folder(tmp_path, ["happy", "angry"])[0].meta["label"] == 0
    with pytest.raises(FileNotFoundError, match="not found"):
        load_labelled_folder(tmp_path, ["neutral"])


def test_alme_jsonl_with_a_common_voice_root(tmp_path):
    clips = tmp_path / "cv" / "en" / "clips"
    clips.mkdir(parents=True)
    soundfile.write(clips / "x.wav", _tone(1.0, 48_000), 48_000)
    record = {
        "stimulus_id": "alme-en-1",
        "language": "en",
        "audio_path": "en/clips/x.wav",
        "ref_text": "The door is red.",
        "conflict_text": "The door is blue.",
        "question": {
            "question_text": "What colour is the door?",
            "choices": ["red", "blue"],
            "correct_answer": "red",
            "flip_type": "adjective_swap",
        },
    }
    other = {**record, "stimulus_id": "alme-de-1", "language": "de"}
    path = tmp_path / "alme.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n")
    items = load_alme_jsonl(path, tmp_path / "cv", language="en")
    assert len(items) == 1
    assert items[0].ref_audio.meta["resampled_from_hz"] == 48_000
    assert items[0].conflict_audio is None
    assert len(load_alme_jsonl(path)) == 2  # no audio root: text only
    path.write_text('{"stimulus_id": 1}\n')
    with pytest.raises(ValueError, match=r"alme\.jsonl:1: not an ALME record"):
        load_alme_jsonl(path)
