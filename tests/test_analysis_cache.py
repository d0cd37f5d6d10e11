"""Resume, don't redo: a claims run killed after its first analysis reruns only what is
missing, and its ledger equals an uninterrupted run's; entries are data, never code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from listenkit import checkpoint_file, codec
from listenkit.experiments import cache as cache_module
from listenkit.experiments.cache import (
    RENDER_ONLY,
    AnalysisCache,
    BatchCheckpoint,
    checkpoint_section,
    code_sha256,
    resumed_seconds,
)

REPO = Path(__file__).resolve().parent.parent

PREREGISTRATION = """
version = 1
[e1]
models = ["A", "B"]
families = ["noise"]
seed = 1
resamples = { smoke = 10, full = 10 }
[e1.claims.C1]
statement = "positive"
statistic = "value"
threshold = 0.0
rule = ">"
"""

CONFTEST = """
import os
import time

import numpy as np


def pytest_listenkit_analysis(cell):
    def compute():
        print(f"COMPUTING {cell.model}", flush=True)
        if cell.model == "B" and os.environ.get("SLOW_B"):
            time.sleep(120)  # killed here
        return {"value": float(np.random.default_rng(len(cell.model)).normal())}

    return cell.session.cache.get("fake", cell.model, cell.family, cell.profile,
                                  {"stimuli": "s"}, compute)
"""

FAKE_CLAIMS = """
import pytest

from listenkit.experiments import Measured


@pytest.mark.claim("C1")
def test_claim(cell):
    cell.judge(Measured(observed=cell.analysis["value"]))
"""


def _run(
    tmp_path: Path,
    name: str,
    cache: Path,
    *,
    slow_b: bool,
    kill_after: Path | None = None,
    extra: tuple[str, ...] = (),
):
    env = {**os.environ, "LISTENKIT_CACHE": str(cache)}
    if slow_b:
        env["SLOW_B"] = "1"
    evidence = tmp_path / name
    command = [
        sys.executable, "-m", "pytest", "claims", "-p",
        "no:cacheprovider", "-s", "--listenkit-evidence-dir", str(evidence), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if kill_after is not None:
        deadline = time.monotonic() + 120
        while not list(kill_after.glob("fake-A-*.npz")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    return output, evidence


@pytest.mark.slow
def test_a_killed_run_resumes_without_recomputing(tmp_path):
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "test_fake.py").write_text(FAKE_CLAIMS)
    (tmp_path / "claims" / "preregistration.toml").write_text(PREREGISTRATION)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    cache = tmp_path / "cache"
    killed, _ = _run(tmp_path, "killed", cache, slow_b=True, kill_after=cache / "analyses")
    assert "COMPUTING A" in killed and "COMPUTING B" in killed
    resumed, evidence = _run(tmp_path, "resumed", cache, slow_b=False)
    assert "COMPUTING A" not in resumed  # reused from the cache
    assert "COMPUTING B" in resumed  # the analysis the kill interrupted
    again, _ = _run(tmp_path, "again", cache, slow_b=False)
    assert "COMPUTING" not in again  # an unchanged rerun only re-renders the evidence
    fresh, _ = _run(tmp_path, "fresh", cache, slow_b=False, extra=("--listenkit-fresh",))
    assert "COMPUTING A" in fresh and "COMPUTING B" in fresh
    fresh_cache = tmp_path / "uninterrupted-cache"
    _, uninterrupted = _run(tmp_path, "uninterrupted", fresh_cache, slow_b=False)
    ledgers = [json.loads((p / "verdicts.json").read_text()) for p in (evidence, uninterrupted)]
    assert ledgers[0] == ledgers[1]


def test_any_key_part_changes_the_key(tmp_path):
    cache = AnalysisCache(tmp_path, salt="prereg")
    base = cache.key("E1", "whisper-base", "noise", "full", weights="w", stimuli="s")
    assert base == cache.key("E1", "whisper-base", "noise", "full", weights="w", stimuli="s")
    for other in (
        cache.key("E1", "whisper-base", "noise", "full", weights="W", stimuli="s"),
        cache.key("E1", "whisper-base", "noise", "full", weights="w", stimuli="S"),
        cache.key("E1", "whisper-base", "noise", "smoke", weights="w", stimuli="s"),
        cache.key("E2", "whisper-base", "noise", "full", weights="w", stimuli="s"),
        AnalysisCache(tmp_path, salt="other").key("E1", "whisper-base", "noise", "full",
                                                  weights="w", stimuli="s"),
    ):  # fmt: skip
        assert other != base


def test_sections_share_one_checkpoint_file(tmp_path):
    """Two batched computations of one stage (a sweep per site) keep their batches apart
    in one file, with their batch starts as keys."""
    path = tmp_path / "partial.npz"
    done = BatchCheckpoint(path)
    attn, block = checkpoint_section(done, "encoder.attn_out"), checkpoint_section(done, "b")
    attn[0] = (np.arange(3.0), np.ones((2, 2), dtype=np.float32))
    attn[8] = (np.zeros(1), np.zeros((1, 1), dtype=np.float32))
    block[0] = (np.full(2, 7.0), np.eye(2, dtype=np.float32))
    again = BatchCheckpoint(path)  # a new process
    view = checkpoint_section(again, "encoder.attn_out")
    assert sorted(view) == [0, 8] and 0 in view and 16 not in view and len(view) == 2
    np.testing.assert_array_equal(view[0][1], np.ones((2, 2), dtype=np.float32))
    assert view[0][1].dtype == np.float32
    assert list(checkpoint_section(again, "b")) == [0]
    assert dict(checkpoint_section({}, "x")) == {}  # without a cache: a plain dict


def test_a_batch_checkpoint_is_on_disk_after_every_batch(tmp_path):
    path = tmp_path / "partial.npz"
    done = BatchCheckpoint(path)
    done[0] = ("a", 1)
    assert dict(BatchCheckpoint(path)) == {0: ("a", 1)}  # a new process sees it
    assert dict(BatchCheckpoint(path, fresh=True)) == {}  # --fresh starts over
    done.discard()
    assert not path.exists()

    seen = []

    def compute(done):
        seen.append(dict(done))
        done[0] = "first batch"
        if len(seen) == 1:
            raise KeyboardInterrupt  # killed after its first batch
        return "result"

    parts = {"weights": "w", "stimuli": "s"}
    cache = AnalysisCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cache.get("E4-test", "m", "f", "smoke", parts, compute, batches=True)
    assert cache.get("E4-test", "m", "f", "smoke", parts, compute, batches=True) == "result"
    assert seen == [{}, {0: "first batch"}]  # the rerun started from the checkpoint
    assert not list((tmp_path / "analyses").glob("*.partial.npz"))  # dropped when done


def test_render_only_code_is_not_in_the_cache_key(tmp_path):
    """A change to the plots, the plugin or the progress lines re-renders a finished run;
    a change to anything that computes recomputes it. And no computing module imports
    the render-only code."""
    for name in ("engine/patching.py", "report/plots.py", "claims/plugin.py",
                 "experiments/progress.py", "experiments/e1.py"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    before = code_sha256.__wrapped__(tmp_path)
    for name in ("report/plots.py", "claims/plugin.py", "experiments/progress.py"):
        (tmp_path / name).write_text("x = 2\n")
    assert code_sha256.__wrapped__(tmp_path) == before
    (tmp_path / "engine/patching.py").write_text("x = 2\n")
    assert code_sha256.__wrapped__(tmp_path) != before
    package = REPO / "listenkit"
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(RENDER_ONLY) or relative.startswith("experiments/e"):
            continue  # the experiments draw their plots (report) when asked to
        assert "listenkit.claims" not in path.read_text().replace("``listenkit.claims", ""), (
            relative
        )


def test_entries_are_data_never_code(tmp_path):
    """A cache entry round-trips arrays, tuples, int keys and dataclasses; a pickle in
    its place is refused (never loaded), and so is a class outside listenkit."""
    from listenkit.engine.sites import Site

    value = {0: (np.arange(3.0), Site(component="encoder.head", heads=(1,))), "x": [None, 1.5]}
    codec.dump(value, tmp_path / "entry.npz")
    back = codec.load(tmp_path / "entry.npz")
    assert back[0][1] == value[0][1] and back["x"] == [None, 1.5]
    np.testing.assert_array_equal(back[0][0], value[0][0])
    import pickle

    (tmp_path / "evil.npz").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises((ValueError, OSError)):
        codec.load(tmp_path / "evil.npz")
    tree = {"dataclass": "os.path:join", "fields": {}}
    with pytest.raises(codec.CodecError, match="not a listenkit class"):
        codec.decode(tree, {})
    with pytest.raises(codec.CodecError, match="dtype object"):
        codec.encode(np.array([object()]), {})
    codec.dump({"nan": np.float64("nan"), "n": np.int64(3)}, tmp_path / "scalars.npz")
    back = codec.load(tmp_path / "scalars.npz")
    assert np.isnan(back["nan"]) and isinstance(back["n"], np.int64)


def test_a_truncated_entry_is_recomputed_and_an_unstorable_result_kept(tmp_path):
    cache, parts, calls = AnalysisCache(tmp_path), {"stimuli": "s"}, []

    def compute():
        calls.append(1)
        return {"value": np.arange(3.0)}

    cache.get("t", "m", "f", "smoke", parts, compute)
    [entry] = (tmp_path / "analyses").glob("t-*.npz")
    entry.write_bytes(entry.read_bytes()[:40])  # killed mid-write by another tool
    assert cache.get("t", "m", "f", "smoke", parts, compute)["value"].tolist() == [0, 1, 2]
    assert len(calls) == 2
    with pytest.warns(RuntimeWarning, match="not cached"):
        kept = cache.get("u", "m", "f", "smoke", parts, lambda: {"when": {1, 2}})
    assert kept == {"when": {1, 2}}


def test_a_second_run_waits_for_the_entry_another_is_computing(tmp_path, capsys):
    """Two runs that need one entry: the second says it waits, then reads the first's
    result instead of computing it (and writing the same checkpoint) again."""
    cache = AnalysisCache(tmp_path)
    parts = {"weights": "w", "stimuli": "s"}
    started, release = threading.Event(), threading.Event()
    computed, results = [], {}

    def slow(done):
        computed.append("first")
        started.set()
        assert release.wait(60)
        return "first's result"

    def run(name, compute):
        results[name] = cache.get("E4-lock", "m", "f", "smoke", parts, compute, batches=True)

    first = threading.Thread(target=run, args=("first", slow))
    first.start()
    assert started.wait(60)
    second = threading.Thread(target=run, args=("second", lambda done: computed.append("2")))
    second.start()
    deadline, said = time.monotonic() + 60, ""
    while "waiting for its result" not in said and time.monotonic() < deadline:
        time.sleep(0.05)
        said += capsys.readouterr().err
    assert "another process is computing it; waiting for its result" in said
    assert second.is_alive()  # blocked on the lock, not computing
    release.set()
    first.join(60)
    second.join(60)
    assert results == {"first": "first's result", "second": "first's result"}
    assert computed == ["first"]


def test_a_checkpoint_carries_its_compute_time_across_processes(tmp_path, monkeypatch):
    """``seconds`` = earlier processes' time up to their last written batch + this one's;
    a format-1 checkpoint (bare batches) resumes with 0 s before."""
    clock = iter([100.0, 130.0, 1000.0, 1000.0, 1010.0])
    monkeypatch.setattr(cache_module.time, "perf_counter", lambda: next(clock))
    path = tmp_path / "partial.npz"
    first = BatchCheckpoint(path)  # opened at 100
    first[0] = "a"  # written at 130: 30 s so far
    second = BatchCheckpoint(path)  # a new process, opened at 1000
    assert dict(second) == {0: "a"} and second.seconds_before == 30.0
    assert resumed_seconds(second) == 30.0 and resumed_seconds({}) == 0.0
    assert second.seconds == 30.0 + (1000.0 - 1000.0)
    second[8] = "b"  # at 1010
    assert checkpoint_file.unpack(codec.load(path)) == ({0: "a", 8: "b"}, 40.0)
    codec.dump({0: "old"}, path)  # format 1
    assert checkpoint_file.unpack(codec.load(path)) == ({0: "old"}, 0.0)
