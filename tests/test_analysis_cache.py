"""Resume, don't redo: a claims run killed after its first analysis reruns only what is
missing, and its ledger equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FAKE_CLAIMS = """
import os
import time

import numpy as np
import pytest

from fixtures.analysis_cache import cached_analysis


def analysis(name, config):
    def compute():
        print(f"COMPUTING {name}", flush=True)
        if name == "B" and os.environ.get("SLOW_B"):
            time.sleep(120)  # killed here
        return {"value": float(np.random.default_rng(len(name)).normal())}

    return cached_analysis(config, "fake", name, "family", "smoke", {"stimuli": "s"}, compute)


@pytest.mark.claim("C1")
@pytest.mark.parametrize(("model_name", "family"), [("A", "noise"), ("B", "noise")])
def test_claim(model_name, family, request, claim_record):
    result = analysis(model_name, request.config)
    claim_record.set(statistic="value", observed=result["value"], threshold=0.0)
    assert result["value"] > 0.0
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
    env = {**os.environ, "PYTHONPATH": str(REPO), "LISTENKIT_CACHE": str(cache)}
    if slow_b:
        env["SLOW_B"] = "1"
    evidence = tmp_path / name
    command = [
        sys.executable, "-m", "pytest", "claims", "-p", "fixtures.evidence", "-p",
        "no:cacheprovider", "-s", "--evidence-dir", str(evidence), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if kill_after is not None:
        deadline = time.monotonic() + 120
        while not list(kill_after.glob("fake-A-*.pkl")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    return output, evidence


@pytest.mark.slow
def test_a_killed_run_resumes_without_recomputing(tmp_path):
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "test_fake.py").write_text(FAKE_CLAIMS)
    cache = tmp_path / "cache"
    killed, _ = _run(tmp_path, "killed", cache, slow_b=True, kill_after=cache / "analyses")
    assert "COMPUTING A" in killed and "COMPUTING B" in killed
    resumed, evidence = _run(tmp_path, "resumed", cache, slow_b=False)
    assert "COMPUTING A" not in resumed  # reused from the cache
    assert "COMPUTING B" in resumed  # the analysis the kill interrupted
    again, _ = _run(tmp_path, "again", cache, slow_b=False)
    assert "COMPUTING" not in again  # an unchanged rerun only re-renders the evidence
    fresh, _ = _run(tmp_path, "fresh", cache, slow_b=False, extra=("--fresh",))
    assert "COMPUTING A" in fresh and "COMPUTING B" in fresh
    fresh_cache = tmp_path / "uninterrupted-cache"
    _, uninterrupted = _run(tmp_path, "uninterrupted", fresh_cache, slow_b=False)
    ledgers = [json.loads((p / "verdicts.json").read_text()) for p in (evidence, uninterrupted)]
    assert ledgers[0] == ledgers[1]


def test_any_key_part_changes_the_key():
    from fixtures.analysis_cache import entry_key

    base = entry_key("E1", "whisper-base", "noise", "full", weights="w", stimuli="s")
    assert base == entry_key("E1", "whisper-base", "noise", "full", weights="w", stimuli="s")
    for other in (
        entry_key("E1", "whisper-base", "noise", "full", weights="W", stimuli="s"),
        entry_key("E1", "whisper-base", "noise", "full", weights="w", stimuli="S"),
        entry_key("E1", "whisper-base", "noise", "smoke", weights="w", stimuli="s"),
        entry_key("E2", "whisper-base", "noise", "full", weights="w", stimuli="s"),
    ):
        assert other != base


def test_a_batch_checkpoint_is_on_disk_after_every_batch(tmp_path, monkeypatch):
    from fixtures.analysis_cache import BatchCheckpoint, cached_analysis

    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    path = tmp_path / "partial.pkl"
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
    with pytest.raises(KeyboardInterrupt):
        cached_analysis(None, "E4-test", "m", "f", "smoke", parts, compute, batches=True)
    assert cached_analysis(None, "E4-test", "m", "f", "smoke", parts, compute, batches=True) == (
        "result"
    )
    assert seen == [{}, {0: "first batch"}]  # the rerun started from the checkpoint
    assert not list((tmp_path / "analyses").glob("*.partial.pkl"))  # dropped when done


def test_render_only_code_is_not_in_the_cache_key(tmp_path):
    """A change to the plots or the ledger re-renders a finished run; a change to anything
    that computes recomputes it. And no computing module imports the render-only code."""
    from fixtures.analysis_cache import RENDER_ONLY, code_sha256

    for name in ("listenkit/engine/patching.py", "listenkit/report/plots.py",
                 "fixtures/evidence.py", "fixtures/analyses.py"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    before = code_sha256.__wrapped__(tmp_path)
    (tmp_path / "listenkit/report/plots.py").write_text("x = 2\n")
    (tmp_path / "fixtures/evidence.py").write_text("x = 2\n")
    assert code_sha256.__wrapped__(tmp_path) == before
    (tmp_path / "listenkit/engine/patching.py").write_text("x = 2\n")
    assert code_sha256.__wrapped__(tmp_path) != before
    for folder in ("listenkit", "fixtures"):
        for path in (REPO / folder).rglob("*.py"):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith(RENDER_ONLY):
                continue
            source = path.read_text()
            assert "listenkit.report" not in source.replace("``listenkit.report", ""), relative
            assert "fixtures.evidence" not in source, relative


def test_a_second_run_waits_for_the_entry_another_is_computing(tmp_path, monkeypatch, capsys):
    """Two runs that need one entry: the second says it waits, then reads the first's
    result instead of computing it (and writing the same checkpoint) again."""
    from fixtures.analysis_cache import cached_analysis

    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    parts = {"weights": "w", "stimuli": "s"}
    started, release = threading.Event(), threading.Event()
    computed, results = [], {}

    def slow(done):
        computed.append("first")
        started.set()
        assert release.wait(60)
        return "first's result"

    def run(name, compute):
        results[name] = cached_analysis(
            None, "E4-lock", "m", "f", "smoke", parts, compute, batches=True
        )

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
