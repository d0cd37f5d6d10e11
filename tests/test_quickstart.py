"""The README's two commands are what CI runs, and the lock file pins every version."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_commands():
    commands = _quick_start_commands()
    assert [c.split()[:2] for c in commands] == [["./run", "claims"], ["./run", "tests"]]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("./run claims", "./run tests"):
        assert re.search(rf"^\s*{re.escape(command)}\b", ci, re.M), f"{command} not in .ci/run"


def test_run_script_is_valid_bash_and_says_how_to_use_it():
    subprocess.run(["bash", "-n", str(ROOT / "run")], check=True)
    out = subprocess.run([str(ROOT / "run"), "help"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage: ./run claims|tests" in out.stderr


def test_lock_file_pins_every_version_but_torch():
    lines = [
        line
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^\s=]+", line) for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert "torch" not in names  # installed first as the CPU build by ./run
    assert {"peft", "nnsight", "openai-whisper", "pytest", "pytest-xdist"} <= names
