"""Adopting finished stages from an earlier commit: only on a miss, only entries (or
batch checkpoints) under the earlier commit's exact key, each recorded; a claims run at
a later commit that adopts reads the same numbers as one that recomputes, and its
evidence lists what it adopted."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from listenkit import checkpoint_file, codec
from listenkit.claims.stage_adoption import origin_at, suite_sha256
from listenkit.experiments.cache import AnalysisCache, code_sha256
from listenkit.report.cache_status import cache_status, format_status
from listenkit.report.static_page import render_run
from listenkit.stage_origin import Origin

from .test_analysis_cache import CONFTEST, FAKE_CLAIMS, PREREGISTRATION

PACKAGE = Path(__file__).resolve().parent.parent / "listenkit"
PARTS = {"weights": "w", "stimuli": "s"}
NAMES = ("E3-encoder", "whisper-tiny.en", "asr-noise", "full")


def _never(*_):
    raise AssertionError("computed, but the entry was to be adopted")


def test_a_miss_adopts_the_earlier_commits_entry_and_records_it(tmp_path):
    old = AnalysisCache(tmp_path, salt="prereg-v1")
    assert old.get(*NAMES, PARTS, lambda: {"x": 1.5}) == {"x": 1.5}
    origin = Origin(commit="a" * 40, salt="prereg-v1", code_sha256=code_sha256())
    said: list[str] = []
    new = AnalysisCache(tmp_path, salt="prereg-v2", adopt=(origin,), say=said.append)
    assert new.get(*NAMES, PARTS, _never) == {"x": 1.5}
    key = new.key(*NAMES, **PARTS)
    assert (tmp_path / "analyses" / f"{key}.npz").is_file()  # copied: the old one stays
    assert (tmp_path / "analyses" / f"{old.key(*NAMES, **PARTS)}.npz").is_file()
    old_entry = tmp_path / "analyses" / f"{old.key(*NAMES, **PARTS)}.npz"
    assert new.origins[key] == {
        "from": old_entry.name,
        "from_commit": "a" * 40,
        "parts": PARTS,
        "partial": False,
        "sha256": hashlib.sha256(old_entry.read_bytes()).hexdigest(),
    }
    assert any("adopted from commit aaaaaaaaaaaa" in line for line in said)
    # a later run at the new commit, without adopting, reads the entry and its record
    later = AnalysisCache(tmp_path, salt="prereg-v2")
    assert later.get(*NAMES, PARTS, _never) == {"x": 1.5}
    assert later.origins == new.origins
    status = {s.key: s for s in cache_status(tmp_path)}
    assert status[key.rsplit("-", 1)[1]].adopted_from == "a" * 40
    assert status[old.key(*NAMES, **PARTS).rsplit("-", 1)[1]].adopted_from is None
    assert "done (adopted from aaaaaaa)" in format_status(list(status.values()))


def test_nothing_is_adopted_under_another_key(tmp_path):
    AnalysisCache(tmp_path, salt="prereg-v1").get(*NAMES, PARTS, lambda: {"x": 1.5})
    wrong = (
        Origin("b" * 40, "prereg-v0", code_sha256()),  # another salt
        Origin("c" * 40, "prereg-v1", "0" * 64),  # another code
    )
    new = AnalysisCache(tmp_path, salt="prereg-v2", adopt=wrong)
    assert new.get(*NAMES, PARTS, lambda: {"x": 2.0}) == {"x": 2.0}  # computed here
    assert new.origins == {}
    other_parts = {"weights": "W", "stimuli": "s"}
    right = AnalysisCache(
        tmp_path, salt="prereg-v2", adopt=(Origin("a" * 40, "prereg-v1", code_sha256()),)
    )
    assert right.get(*NAMES, other_parts, lambda: {"x": 3.0}) == {"x": 3.0}
    assert right.origins == {}


def test_a_batch_checkpoint_is_adopted_and_the_stage_resumes_from_it(tmp_path):
    def stage(record):
        def compute(done):
            for start in (0, 8, 16):
                if start not in done:
                    record.append(start)
                    done[start] = start * 2
                    if start == 8 and len(record) == 2 and record[0] == 0:
                        raise KeyboardInterrupt  # the old run is killed after 2 batches
            return {"sum": float(sum(done[s] for s in (0, 8, 16)))}

        return compute

    old_batches: list[int] = []
    old = AnalysisCache(tmp_path, salt="v1")
    with pytest.raises(KeyboardInterrupt):
        old.get(*NAMES, PARTS, stage(old_batches), batches=True)
    assert old_batches == [0, 8]
    new_batches: list[int] = [-1]  # (not a fresh record: the old run's kill rule is off)
    new = AnalysisCache(tmp_path, salt="v2", adopt=(Origin("a" * 40, "v1", code_sha256()),))
    assert new.get(*NAMES, PARTS, stage(new_batches), batches=True) == {"sum": 48.0}
    assert new_batches == [-1, 16]  # only the batch the old run had not finished
    key = new.key(*NAMES, **PARTS)
    assert new.origins[key]["partial"] is True
    assert not (tmp_path / "analyses" / f"{key}.partial.npz").exists()  # done: dropped


def test_an_adopted_checkpoint_that_cannot_be_read_or_is_superseded_leaves_no_false_record(
    tmp_path,
):
    origin = Origin("a" * 40, "v1", code_sha256())
    old = AnalysisCache(tmp_path, salt="v1")
    old_partial = tmp_path / "analyses" / f"{old.key(*NAMES, **PARTS)}.partial.npz"
    old_partial.parent.mkdir(parents=True)
    codec.dump(checkpoint_file.pack({0: 1.0}, 5.0), old_partial)
    new = AnalysisCache(tmp_path, salt="v2", adopt=(origin,))
    key = new.key(*NAMES, **PARTS)
    new_partial = tmp_path / "analyses" / f"{key}.partial.npz"

    def broken_copy(done):  # the copied checkpoint is unreadable when the stage opens it
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        new.get(*NAMES, PARTS, broken_copy, batches=True)
    assert new_partial.is_file()  # adopted, with its record
    new_partial.write_bytes(b"garbage")
    fresh_start = AnalysisCache(tmp_path, salt="v2", adopt=(origin,))
    assert fresh_start.get(*NAMES, PARTS, lambda done: {"x": len(done)}, batches=True) == {"x": 0}
    assert fresh_start.origins == {}  # computed from scratch: not called adopted
    # an old entry that finished after its checkpoint was adopted supersedes the copy
    other = {"weights": "w2", "stimuli": "s"}
    codec.dump(checkpoint_file.pack({0: 1.0}, 5.0), tmp_path / "analyses" / (
        old.key(*NAMES, **other) + ".partial.npz"))  # fmt: skip
    with pytest.raises(RuntimeError):
        AnalysisCache(tmp_path, salt="v2", adopt=(origin,)).get(*NAMES, other, broken_copy,
                                                                batches=True)  # fmt: skip
    old.get(*NAMES, other, lambda done: {"x": 9.0}, batches=True)  # the old run finishes
    later = AnalysisCache(tmp_path, salt="v2", adopt=(origin,))
    assert later.get(*NAMES, other, _never, batches=True) == {"x": 9.0}
    assert later.origins[later.key(*NAMES, **other)]["partial"] is False
    assert not (tmp_path / "analyses" / f"{later.key(*NAMES, **other)}.partial.npz").exists()


def test_fresh_and_adopt_cannot_be_combined(tmp_path):
    with pytest.raises(ValueError, match="nothing to adopt"):
        AnalysisCache(tmp_path, fresh=True, adopt=(Origin("a" * 40, "", ""),))


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _suite(root: Path) -> None:
    """A claims suite in a git checkout that holds a copy of listenkit's source."""
    (root / "claims").mkdir(parents=True)
    (root / "claims" / "test_fake.py").write_text(FAKE_CLAIMS)
    (root / "claims" / "preregistration.toml").write_text(PREREGISTRATION)
    (root / "conftest.py").write_text(CONFTEST)
    shutil.copytree(PACKAGE, root / "listenkit", ignore=shutil.ignore_patterns("__pycache__"))
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "v1")


def test_origin_at_recomputes_an_earlier_commits_key_inputs(tmp_path):
    _suite(tmp_path)
    first = _git(tmp_path, "rev-parse", "HEAD")
    prereg = tmp_path / "claims" / "preregistration.toml"
    salt_v1 = __import__("hashlib").sha256(prereg.read_bytes()).hexdigest()
    salt_v1 += suite_sha256(tmp_path, tmp_path / "claims")
    prereg.write_text(PREREGISTRATION + "# amendment\n")
    (tmp_path / "listenkit" / "experiments" / "e3.py").write_text("# changed\n")
    _git(tmp_path, "commit", "-q", "-am", "v2")
    origin = origin_at(tmp_path, first[:9], prereg)
    assert origin == Origin(first, salt_v1, code_sha256(PACKAGE))  # v1's files, not v2's
    with pytest.raises(ValueError, match="no such commit"):
        origin_at(tmp_path, "nonesuch", prereg)
    _git(tmp_path, "checkout", "-q", first)
    with pytest.raises(ValueError, match="not an ancestor"):
        origin_at(tmp_path, "main" if _has(tmp_path, "main") else "master", prereg)


def _has(root: Path, branch: str) -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "-q", branch], cwd=root,
                          capture_output=True).returncode == 0  # fmt: skip


def _claims(root: Path, evidence: str, *extra: str) -> tuple[str, Path]:
    env = {**os.environ, "LISTENKIT_CACHE": str(root / "cache"), "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "pytest", "claims", "-p", "no:cacheprovider", "-s",
               "--listenkit-evidence-dir", str(root / evidence), *extra]  # fmt: skip
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr, root / evidence


def test_a_claims_run_adopts_stages_and_its_evidence_says_so(tmp_path):
    _suite(tmp_path)
    first = _git(tmp_path, "rev-parse", "HEAD")
    computed, v1 = _claims(tmp_path, "v1")
    assert "COMPUTING A" in computed and "COMPUTING B" in computed
    prereg = tmp_path / "claims" / "preregistration.toml"
    prereg.write_text(PREREGISTRATION + "# amendment: how the verdict reads the stages\n")
    _git(tmp_path, "commit", "-q", "-am", "amendment")
    adopted, v2 = _claims(tmp_path, "v2", "--listenkit-adopt-stages-from", first)
    assert "COMPUTING" not in adopted, adopted
    ledgers = [json.loads((p / "verdicts.json").read_text()) for p in (v1, v2)]
    assert ledgers[0] == ledgers[1]  # the same numbers and verdicts
    evidence = json.loads(next((v2 / "C1").rglob("evidence.json")).read_text())
    [stage] = evidence["stages_adopted"]
    assert stage["from_commit"] == first and stage["partial"] is False
    assert "stages_adopted" not in json.loads(next((v1 / "C1").rglob("evidence.json")).read_text())
    page = render_run(v2).read_text()
    assert page.count(f"1 analysis stage(s) adopted from commit {first[:12]}") == 2
    assert "adopted from commit" not in render_run(v1).read_text()
    bad, _ = _claims(tmp_path, "bad", "--listenkit-adopt-stages-from", "nonesuch")
    assert "no such commit" in bad
