"""``listenkit status --copy-to DIR``: a run's work copied out of its cache and back."""

from __future__ import annotations

import os
import shutil

import pytest

from listenkit import codec
from listenkit.report.cache_copy import copy_run
from listenkit.report.cache_status import cache_status
from listenkit.report.cli import main as cli_main

KEY = "0123456789abcdef0123"
STAGE = f"E3-encoder-whisper-base-ser-prosody-full-{KEY}"


def _cache(root):
    analyses, adapters = root / "analyses", root / "adapters"
    codec.dump({"x": 1.0}, analyses / f"E3-encoder-whisper-base-asr-noise-full-{KEY}.npz")
    codec.dump({0: 1.0}, analyses / f"{STAGE}.partial.npz")
    (analyses / f"{STAGE}.npz.lock").touch()
    (analyses / f".{STAGE}.npz.abc.tmp").write_bytes(b"half")
    (adapters / "whisper-base-ser-prosody-after-0-k1").mkdir(parents=True)
    (adapters / "whisper-base-ser-prosody-after-0-k1" / "adapter.pt").write_bytes(b"w" * 10)
    (adapters / ".whisper-base-ser-prosody-after-1-k2.checkpoint.pt").write_bytes(b"c" * 5)
    (adapters / ".whisper-base-ser-prosody-after-2-k3.xyz").mkdir()  # a staging folder
    (adapters / ".whisper-base-ser-prosody-after-2-k3.xyz" / "adapter.pt").write_bytes(b"s")


def _names(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_copy_keeps_entries_checkpoints_and_adapters_not_locks_or_staging(tmp_path):
    cache, to = tmp_path / "cache", tmp_path / "copy"
    _cache(cache)
    done = copy_run(cache, to)
    assert _names(to) == [
        "adapters/.whisper-base-ser-prosody-after-1-k2.checkpoint.pt",
        "adapters/whisper-base-ser-prosody-after-0-k1/adapter.pt",
        f"analyses/E3-encoder-whisper-base-asr-noise-full-{KEY}.npz",
        f"analyses/{STAGE}.partial.npz",
    ]
    assert (done.copied, done.unchanged, done.removed) == (4, 0, 0)
    assert done.bytes_copied == sum(p.stat().st_size for p in to.rglob("*") if p.is_file())
    # a second copy writes nothing that did not change
    assert copy_run(cache, to).unchanged == 4
    # the stage and the training finish: their checkpoints leave the copy, the results come
    codec.dump({"x": 2.0}, cache / "analyses" / f"{STAGE}.npz")
    os.remove(cache / "analyses" / f"{STAGE}.partial.npz")
    os.remove(cache / "adapters" / ".whisper-base-ser-prosody-after-1-k2.checkpoint.pt")
    again = copy_run(cache, to)
    assert (again.copied, again.removed) == (1, 2)
    assert f"analyses/{STAGE}.npz" in _names(to) and f"analyses/{STAGE}.partial.npz" not in _names(
        to
    )


def test_a_restored_copy_resumes_where_it_was_taken(tmp_path, capsys):
    cache, to, fresh = tmp_path / "cache", tmp_path / "copy", tmp_path / "new-machine"
    _cache(cache)
    assert cli_main(["status", "--cache", str(cache), "--copy-to", str(to)]) == 0
    assert "copied to" in capsys.readouterr().out
    shutil.copytree(to, fresh)  # cp -r DIR/. CACHE/
    got = {(s.model, s.family, s.state, s.batches) for s in cache_status(fresh)}
    assert got == {
        ("whisper-base", "asr-noise", "done", None),
        ("whisper-base", "ser-prosody", "partial", 1),
    }
    assert codec.load(fresh / "analyses" / f"{STAGE}.partial.npz") == {0: 1.0}


def test_copy_from_a_folder_that_is_no_cache_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no analyses or adapters"):
        copy_run(tmp_path, tmp_path / "copy")
