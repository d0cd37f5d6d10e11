"""``listenkit status --copy-to DIR``: a run's work copied out of its cache and back."""

from __future__ import annotations

import shutil

import pytest

from listenkit.experiments.cache import AnalysisCache
from listenkit.report import cache_copy
from listenkit.report.cache_copy import copy_run
from listenkit.report.cli import main as cli_main

STAGE = ("E3-encoder", "whisper-base", "ser-prosody", "full")
ADAPTER = "whisper-base-ser-prosody-after-0-k1"


def _interrupted(done):
    done[0] = 1.0  # one finished batch, then the machine goes away
    raise RuntimeError("killed")


def _run_half(root):
    """A cache as a killed run leaves it: one finished stage, one stage with a batch
    checkpoint, one finished adapter, one training checkpoint, locks, temporary files."""
    cache = AnalysisCache(root)
    cache.get(*STAGE, {"encoder": "before"}, lambda: {"x": 1.0})
    with pytest.raises(RuntimeError):
        cache.get(*STAGE, {"encoder": "after-0"}, _interrupted, batches=True)
    adapters = root / "adapters"
    (adapters / ADAPTER).mkdir(parents=True)
    (adapters / ADAPTER / "files.json").write_text("{}")
    (adapters / ADAPTER / "adapter.pt").write_bytes(b"w" * 10)
    (adapters / ".whisper-base-ser-prosody-after-1-k2.checkpoint.pt").write_bytes(b"c" * 5)
    (adapters / f"{ADAPTER}.lock").touch()
    (adapters / ".whisper-base-ser-prosody-after-2-k3.xyz" / "entry").mkdir(parents=True)
    (adapters / ".whisper-base-ser-prosody-after-2-k3.xyz" / "entry" / "a.pt").write_bytes(b"s")
    (root / "analyses" / "E3-x.npz.adopting").write_bytes(b"half")
    (root / "analyses" / ".E3-y.npz.abc.tmp").write_bytes(b"half")
    return cache


def _names(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_restored_copy_resumes_where_the_run_was_killed(tmp_path, capsys):
    cache, to, fresh = tmp_path / "cache", tmp_path / "copy", tmp_path / "new-machine"
    _run_half(cache)
    assert cli_main(["status", "--cache", str(cache), "--copy-to", str(to)]) == 0
    assert "copied to" in capsys.readouterr().out
    names = _names(to)
    assert len([n for n in names if n.startswith("analyses/")]) == 2  # entry + checkpoint
    assert [n for n in names if n.startswith("adapters/")] == [
        "adapters/.whisper-base-ser-prosody-after-1-k2.checkpoint.pt",
        f"adapters/{ADAPTER}/adapter.pt",
        f"adapters/{ADAPTER}/files.json",
    ]
    shutil.copytree(to, fresh)  # cp -r DIR/. CACHE/ on the new machine
    restored = AnalysisCache(fresh)

    def never():
        raise AssertionError("recomputed a finished stage")

    assert restored.get(*STAGE, {"encoder": "before"}, never) == {"x": 1.0}
    resumed = []

    def finish(done):
        resumed.append(dict(done))
        return {"x": 2.0}

    assert restored.get(*STAGE, {"encoder": "after-0"}, finish, batches=True) == {"x": 2.0}
    assert resumed == [{0: 1.0}]  # resumed at the checkpoint's next batch


def test_a_second_copy_writes_only_what_changed_and_drops_finished_checkpoints(tmp_path):
    cache, to = tmp_path / "cache", tmp_path / "copy"
    analyses = _run_half(cache)
    first = copy_run(cache, to)
    assert (first.copied, first.unchanged, first.removed) == (5, 0, 0)
    assert first.bytes_copied == sum(p.stat().st_size for p in to.rglob("*") if p.is_file())
    assert copy_run(cache, to).unchanged == 5
    # same size, new content: copied again (the modification time changed)
    checkpoint = cache / "adapters" / ".whisper-base-ser-prosody-after-1-k2.checkpoint.pt"
    checkpoint.write_bytes(b"d" * 5)
    assert copy_run(cache, to).copied == 1
    assert (to / checkpoint.relative_to(cache)).read_bytes() == b"d" * 5
    # the stage and the training finish: their checkpoints leave the copy
    analyses.get(*STAGE, {"encoder": "after-0"}, lambda done: {"x": 2.0}, batches=True)
    (cache / "adapters" / "whisper-base-ser-prosody-after-1-k2").mkdir()
    (cache / "adapters" / "whisper-base-ser-prosody-after-1-k2" / "files.json").write_text("{}")
    checkpoint.unlink()
    again = copy_run(cache, to)
    assert (again.copied, again.removed) == (2, 2)
    assert not [n for n in _names(to) if n.endswith((".partial.npz", ".checkpoint.pt"))]


def test_a_copy_from_another_cache_deletes_nothing(tmp_path):
    cache, to, other = tmp_path / "cache", tmp_path / "copy", tmp_path / "other"
    _run_half(cache)
    copy_run(cache, to)
    AnalysisCache(other).get("E1", "whisper-base", "voice", "full", {}, lambda: {"y": 0.0})
    assert copy_run(other, to).removed == 0
    assert len(_names(to)) == 6


def test_a_file_that_disappears_during_the_copy_is_skipped(tmp_path, monkeypatch):
    cache, to = tmp_path / "cache", tmp_path / "copy"
    _run_half(cache)
    listed = cache_copy._files

    def listed_then_finished(root):
        files = listed(root)
        next(p for p in files.values() if p.name.endswith(".partial.npz")).unlink()
        return files

    monkeypatch.setattr(cache_copy, "_files", listed_then_finished)
    done = copy_run(cache, to)
    assert (done.copied, done.vanished) == (4, 1)


def test_copy_from_a_folder_that_is_no_cache_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no analyses or adapters"):
        copy_run(tmp_path, tmp_path / "copy")
