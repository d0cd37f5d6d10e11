"""Evidence files and the verdict ledger.

Layout under the evidence directory (default ``reports/``)::

    <claim>/<model>-<family>/evidence.json   per-claim numbers, versions, seeds, hashes
    <claim>/<model>-<family>/plot.png
    .ledger/<entry>.json                     one verdict per finished claim test
    verdicts.json                            the ledger, sorted, without timings
    claims.html                              pytest-html report (self-contained)

Verdicts: ``supported`` (the claim's test passed), ``not supported`` (its assertion
failed: a finding), ``error`` (anything else: broken machinery or data), ``skipped``
(with the reason, e.g. weights not supplied); secondary analyses are ``reported``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "VERDICTS",
    "collect_ledger",
    "environment",
    "evidence_dir_for",
    "validate_ledger",
    "write_json_atomic",
    "write_ledger_entry",
]

VERDICTS = ("supported", "not supported", "error", "skipped", "reported")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    return value


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON (numpy values converted, NaN -> null) via a temporary file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(_plain(data), handle, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def evidence_dir_for(root: str | Path, claim: str, model: str, family: str) -> Path:
    return Path(root) / claim / f"{model}-{family}"


def environment() -> dict[str, str]:
    """Versions that shape the numbers."""
    packages = ("listenkit", "torch", "numpy", "scipy", "openai-whisper", "nnsight", "piper-tts")
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _entry_key(entry: Mapping[str, Any]) -> tuple:
    return (entry["kind"], entry["claim"], entry["model"], entry["family"])


def write_ledger_entry(root: str | Path, entry: Mapping[str, Any]) -> Path:
    """Record one verdict (called once per claim test, in whichever worker ran it)."""
    if entry["verdict"] not in VERDICTS:
        raise ValueError(f"unknown verdict {entry['verdict']!r}")
    name = hashlib.sha256(json.dumps(_entry_key(entry)).encode()).hexdigest()[:16]
    return write_json_atomic(Path(root) / ".ledger" / f"{name}.json", entry)


def collect_ledger(root: str | Path, *, profile: str) -> dict[str, Any]:
    """Gather the per-test entries into ``verdicts.json`` content (sorted, no timings)."""
    entries = [json.loads(p.read_text()) for p in sorted((Path(root) / ".ledger").glob("*.json"))]
    for entry in entries:
        entry.pop("wall_time_s", None)
    entries.sort(key=_entry_key)
    return {
        "profile": profile,
        "underpowered": profile == "smoke",
        "claims": [e for e in entries if e["kind"] == "claim"],
        "secondary": [e for e in entries if e["kind"] == "secondary"],
    }


def validate_ledger(
    ledger: Mapping[str, Any], expected: Iterable[tuple[str, str, str]], root: str | Path
) -> list[str]:
    """Problems that make a claims run invalid: a missing verdict, an ``error``, a missing
    evidence file or report. "not supported" is a finding, not a problem."""
    problems = []
    seen = {(e["claim"], e["model"], e["family"]): e for e in ledger.get("claims", [])}
    for key in expected:
        entry = seen.get(key)
        if entry is None:
            problems.append(f"no verdict for {key}")
            continue
        if entry["verdict"] == "error":
            problems.append(f"{key}: error: {entry.get('message', '')}")
        if entry["verdict"] in ("supported", "not supported"):
            folder = evidence_dir_for(root, *key)
            for name in ("evidence.json", "plot.png"):
                if not (folder / name).is_file():
                    problems.append(f"{key}: missing {folder / name}")
    for entry in ledger.get("secondary", []):
        if entry["verdict"] == "error":
            problems.append(f"secondary {entry['claim']} {entry['model']}-{entry['family']}: error")
    if not (Path(root) / "claims.html").is_file():
        problems.append(f"missing report {Path(root) / 'claims.html'}")
    return problems
