"""Your own audio on the command line: ``listenkit sweep --audio DIR`` on real
recordings (the pocketsphinx LibriVox clips), ``--pairs-manifest``, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from listenkit.report.cli import main as cli_main


@pytest.fixture(scope="module")
def clips():
    from listenkit.stimuli.real_speech import pocketsphinx_clips

    return [u for u in pocketsphinx_clips() if u.id.startswith("pocketsphinx/librivox/")][:3]


def _write_folder(folder, clips):
    """The clips as NAME.wav + NAME.txt; the second at 22.05 kHz stereo (to be converted)."""
    from listenkit.models.audio import resample

    folder.mkdir()
    for i, u in enumerate(clips):
        audio, rate = np.asarray(u.audio, np.float32), 16_000
        if i == 1:
            mono = resample(audio, 16_000, 22_050).astype(np.float32)
            audio, rate = np.stack([mono, mono], axis=1), 22_050
        soundfile.write(folder / f"clip{i}.wav", audio, rate)
        (folder / f"clip{i}.txt").write_text(u.text)
    return folder


def test_sweep_runs_on_a_folder_of_real_recordings(tmp_path, clips, capsys):
    folder = _write_folder(tmp_path / "wavs", clips)
    out = tmp_path / "out"
    code = cli_main(["sweep", "--model", "whisper-tiny.en", "--audio", str(folder),
                     "--corrupt", "noise:0", "--out", str(out), "--resamples", "200",
                     "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert "resampled from hz 22050" in captured.err and "downmixed from channels 2" in captured.err
    assert code in (0, 1)  # 1: every pair below the floor (said on stderr)
    rows = json.loads((out / "sweep.json").read_text())
    assert len(rows["ids"]) == 3 and all(i.startswith("own-clip") for i in rows["ids"])
    if code == 0:
        assert (out / "curve.png").is_file() and "white noise at 0 dB" in captured.out


def test_a_manifest_of_clean_and_corrupt_recordings(tmp_path, clips):
    from listenkit.stimuli.own_audio import load_pairs_manifest

    folder = _write_folder(tmp_path / "wavs", clips)
    manifest = tmp_path / "pairs.jsonl"
    noisy = np.asarray(clips[0].audio, np.float32) * 0.5 + np.float32(0.01)
    soundfile.write(folder / "clip0_noisy.wav", noisy, 16_000)
    row = {"id": "p0", "text": clips[0].text, "clean": "wavs/clip0.wav"}
    manifest.write_text(json.dumps(row | {"corrupt": "wavs/clip0_noisy.wav"}) + "\n")
    (pair,) = load_pairs_manifest(manifest)
    assert pair.clean.text == pair.corrupt.text == clips[0].text
    assert folder.is_dir()


def test_clear_errors_lose_nothing(tmp_path, clips, capsys):
    folder = _write_folder(tmp_path / "wavs", clips)
    (folder / "clip2.txt").unlink()
    out = str(tmp_path / "out")
    assert cli_main(["sweep", "--audio", str(folder), "--out", out]) == 2
    assert "has no transcript clip2.txt" in capsys.readouterr().err
    assert cli_main(["sweep", "--audio", str(folder), "--corrupt", "noise:loud", "--out", out]) == 2
    assert "is not a number" in capsys.readouterr().err
    (folder / "clip2.txt").write_text("x")
    (folder / "clip0.wav").write_bytes(b"not audio")
    assert cli_main(["sweep", "--audio", str(folder), "--out", out]) == 2
    assert "unreadable or corrupt audio" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "p"}\n')
    assert cli_main(["sweep", "--pairs-manifest", str(bad), "--out", out]) == 2
    assert "need a JSON object with id, text, clean, corrupt" in capsys.readouterr().err


def test_a_manifest_pair_of_different_lengths_is_refused_with_its_line(tmp_path, clips):
    _write_folder(tmp_path / "wavs", clips)
    manifest = tmp_path / "pairs.jsonl"
    row = {"id": "p0", "text": clips[0].text, "clean": "wavs/clip0.wav"}
    manifest.write_text(json.dumps(row | {"corrupt": "wavs/clip1.wav"}) + "\n")
    out = str(tmp_path / "out")
    assert cli_main(["sweep", "--pairs-manifest", str(manifest), "--out", out]) == 2


def test_folder_ids_are_paths_under_the_root(tmp_path, clips):
    from listenkit.stimuli.loaders import load_wav_txt_folder

    for sub in ("a", "b"):
        folder = tmp_path / "root" / sub
        folder.mkdir(parents=True)
        soundfile.write(folder / "same.WAV", np.asarray(clips[0].audio, np.float32), 16_000)
        (folder / "same.txt").write_text(clips[0].text)
    assert [u.id for u in load_wav_txt_folder(tmp_path / "root")] == ["a/same", "b/same"]


def test_every_command_line_option_has_help_text():
    from listenkit.report.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    for name, command in sub.choices.items():
        missing = [a.option_strings[0] for a in command._actions
                   if a.option_strings and a.dest != "help" and not a.help]  # fmt: skip
        assert not missing, f"listenkit {name}: no help for {missing}"


def _write_conflicts(folder, stimuli, *, with_conflict_audio=True):
    """ALME JSONL records for ``stimuli``, their audio as wav files beside it."""
    folder.mkdir()
    lines = []
    for i, s in enumerate(stimuli):
        soundfile.write(folder / f"ref{i}.wav", s.ref_audio.audio, 16_000)
        soundfile.write(folder / f"conflict{i}.wav", s.conflict_audio.audio, 16_000)
        record = {"stimulus_id": s.stimulus_id, "language": "en", "audio_path": f"ref{i}.wav",
                  "ref_text": s.ref_text, "conflict_text": s.conflict_text,
                  "question": {"question_text": s.question.question_text,
                               "choices": list(s.question.choices),
                               "correct_answer": s.question.correct_answer,
                               "flip_type": s.question.flip_type}}  # fmt: skip
        if with_conflict_audio:
            record["conflict_audio_path"] = f"conflict{i}.wav"
        lines.append(json.dumps(record))
    (folder / "conflicts.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "conflicts.jsonl"


@pytest.fixture(scope="module")
def conflicts():
    """Five built-in conflicts (Piper joe speaks both texts), one per flip type."""
    import listenkit
    from listenkit.stimuli.families import CONFLICT_FAMILIES, conflict_family

    model = listenkit.load_model("whisper-tiny.en")
    _, stimuli = conflict_family(CONFLICT_FAMILIES["conflict"], 1, encode=model.text_tokens,
                                 tokenizer_name=model.name, seed=3)  # fmt: skip
    return list(stimuli)


def test_gc_runs_on_your_own_alme_jsonl(tmp_path, conflicts, capsys):
    jsonl = _write_conflicts(tmp_path / "mine", conflicts)
    out = tmp_path / "out"
    code = cli_main(["gc", "--model", "whisper-tiny.en", "--conflicts", str(jsonl),
                     "--out", str(out), "--resamples", "200", "--quiet"])  # fmt: skip
    assert code == 0
    assert f"{len(conflicts)} of {len(conflicts)} conflicts" in capsys.readouterr().err
    result = json.loads((out / "gc.json").read_text())
    assert sorted(result["ids"]) == sorted(s.stimulus_id for s in conflicts)
    assert (out / "gc_curve.csv").is_file()


def test_gc_on_own_conflicts_says_what_is_missing(tmp_path, conflicts, capsys):
    assert cli_main(["gc", "--conflicts", str(tmp_path / "none.jsonl"), "--out", "x"]) == 2
    assert "no such file" in capsys.readouterr().err
    jsonl = _write_conflicts(tmp_path / "bare", conflicts[:2], with_conflict_audio=False)
    code = cli_main(["gc", "--model", "whisper-tiny.en", "--conflicts", str(jsonl),
                     "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2
    assert "conflict_audio_path" in capsys.readouterr().err
    (tmp_path / "bare" / "ref0.wav").write_bytes(b"not audio")
    code = cli_main(["gc", "--model", "whisper-tiny.en", "--conflicts", str(jsonl),
                     "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2 and "ref0.wav" in capsys.readouterr().err
