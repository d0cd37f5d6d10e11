"""Start several processes that wait at a barrier, then race (for cache tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BARRIER = """
import os, sys, time
open(sys.argv[1] + f".ready{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
"""


def race(setup: str, body: str, *, cache: Path, workdir: Path, n: int = 2) -> list[str]:
    """Run ``setup``, wait until all ``n`` processes are ready, then run ``body`` in each.

    Returns each process's stdout; raises if any process fails.
    """
    go = workdir / "go"
    script = setup + BARRIER + body
    env = {**os.environ, "LISTENKIT_CACHE": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]
    deadline = time.monotonic() + 120
    while len(list(workdir.glob("go.ready*"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    if codes != [0] * n:
        raise AssertionError(f"racing processes failed with {codes}: {outputs}")
    return outputs
