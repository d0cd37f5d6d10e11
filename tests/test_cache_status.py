"""``listenkit status``: a long run's stages read from its analysis cache."""

from __future__ import annotations

from filelock import FileLock

from listenkit import checkpoint_file, codec
from listenkit.report.cache_status import cache_status, format_status
from listenkit.report.cli import main as cli_main

KEY = "0123456789abcdef0123"


def test_status_reads_done_partial_and_running_stages(tmp_path, capsys):
    folder = tmp_path / "analyses"
    folder.mkdir()
    codec.dump({"x": 1.0}, folder / f"E4-screen-whisper-tiny.en-noise-full-{KEY}.npz")
    checkpoint = {0: 1.0, 8: 2.0, 16: 3.0}
    codec.dump(checkpoint, folder / f"E4-recovery-chunk0-whisper-base-noise-full-{KEY}.partial.npz")
    # finished after a checkpoint: the left-over checkpoint is not listed
    codec.dump({}, folder / f"E1-whisper-base-voice-full-{KEY[::-1]}.npz")
    codec.dump({0: 1}, folder / f"E1-whisper-base-voice-full-{KEY[::-1]}.partial.npz")
    # an old lock with nothing stored: not listed; a held one: running
    (folder / f"E3-encoder-whisper-base-asr-noise-full-{KEY}.npz.lock").touch()
    held = FileLock(str(folder / f"E3-encoder-whisper-tiny.en-ser-prosody-full-{KEY}.npz.lock"))
    with held:
        stages = cache_status(tmp_path)
        assert cli_main(["status", "--cache", str(tmp_path)]) == 0
    got = {(s.kind, s.model, s.family): (s.state, s.batches) for s in stages}
    assert got == {
        ("E4-screen", "whisper-tiny.en", "noise"): ("done", None),
        ("E4-recovery-chunk0", "whisper-base", "noise"): ("partial", 3),
        ("E1", "whisper-base", "voice"): ("done", None),
        ("E3-encoder", "whisper-tiny.en", "ser-prosody"): ("running", None),
    }
    out = capsys.readouterr().out
    assert "whisper-base noise (full)" in out
    assert "E4-recovery-chunk0" in out and "partial: 3 batches" in out
    assert "whisper-tiny.en ser-prosody (full)" in out and "running" in out
    assert format_status([]) == "the cache holds no analyses yet\n"
    assert cli_main(["status", "--cache", str(tmp_path / "none")]) == 2
    assert "no analysis cache" in capsys.readouterr().err


def test_status_shows_a_checkpoints_compute_time(tmp_path, capsys):
    """A format-2 checkpoint keeps its compute time; status prints it (a format-1 file,
    written before the time was kept, shows its batches only)."""
    folder = tmp_path / "analyses"
    folder.mkdir()
    codec.dump(
        checkpoint_file.pack({0: 1.0, 8: 2.0}, 2520.0),
        folder / f"E3-encoder-whisper-base-asr-noise-full-{KEY}.partial.npz",
    )
    (stage,) = cache_status(tmp_path)
    assert (stage.state, stage.batches, stage.seconds) == ("partial", 2, 2520.0)
    assert "partial: 2 batches in 42 min" in format_status([stage])
