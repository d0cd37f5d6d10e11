"""Evidence files and the verdict ledger.

Layout under the evidence directory (default ``reports/``)::

    <claim>/<model>-<family>/evidence.json   per-claim numbers, versions, seeds, hashes
    <claim>/<model>-<family>/plot.png
    .ledger/<entry>.json                     one verdict per finished claim test
    verdicts.json                            the ledger, sorted, without timings
    claims.html                              pytest-html report (self-contained)

Verdicts: ``supported`` (the claim's test passed), ``not supported`` (its assertion
failed: a finding), ``inconclusive`` (a pre-registered minimum was not met or the
statistic is undefined; the test is an xfail with the reason), ``error`` (anything
else: broken machinery or data), ``skipped`` (with the reason, e.g. weights not
supplied); secondary analyses are ``reported``.

Multiplicity (pre-registration v2): a claim whose entries carry ``p_raw`` and
``multiplicity = "holm"`` is judged on Holm-adjusted p-values across its cells in
the run (``apply_holm``, when the ledger is collected): ``verdict`` is then
``supported`` iff ``p_holm < alpha``; ``verdict_before_holm`` keeps the test's own
outcome (raw p).
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

from listenkit.stats.significance import holm

__all__ = [
    "VERDICTS",
    "apply_holm",
    "collect_ledger",
    "environment",
    "evidence_dir_for",
    "validate_ledger",
    "write_json_atomic",
    "write_ledger_entry",
]

VERDICTS = ("supported", "not supported", "inconclusive", "error", "skipped", "reported")


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


def apply_holm(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Holm across the cells of each p-value claim (entries with ``p_raw`` and
    ``multiplicity == "holm"`` whose test gave a p-value: supported or not supported).

    Sets ``p_holm``, ``holm_cells`` (the family size), ``observed = p_holm`` and the
    verdict ``supported`` iff ``p_holm < alpha``; ``verdict_before_holm`` keeps the
    raw-p verdict. Other entries are returned unchanged."""
    families: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        if e.get("multiplicity") == "holm" and e.get("verdict") in ("supported", "not supported"):
            families.setdefault(e["claim"], []).append(e)
    for cells in families.values():
        adjusted = holm([float(e["p_raw"]) for e in cells])
        for e, p in zip(cells, adjusted, strict=True):
            e["verdict_before_holm"] = e["verdict"]
            e["p_holm"] = round(float(p), 6)
            e["holm_cells"] = len(cells)
            e["observed"] = e["p_holm"]
            e["verdict"] = "supported" if p < float(e["alpha"]) else "not supported"
    return entries


def collect_ledger(
    root: str | Path, *, profile: str, preregistration_version: int | None = None
) -> dict[str, Any]:
    """Gather the per-test entries into ``verdicts.json`` content (sorted, no timings),
    with Holm applied across the cells of each p-value claim."""
    entries = [json.loads(p.read_text()) for p in sorted((Path(root) / ".ledger").glob("*.json"))]
    for entry in entries:
        entry.pop("wall_time_s", None)
    entries.sort(key=_entry_key)
    apply_holm(entries)
    return {
        "profile": profile,
        "underpowered": profile == "smoke",
        "preregistration_version": preregistration_version,
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
        if entry["verdict"] in ("supported", "not supported", "inconclusive"):
            folder = evidence_dir_for(root, *key)
            needed = ["evidence.json"] + (
                ["plot.png"] if entry["verdict"] != "inconclusive" else []
            )
            for name in needed:
                if not (folder / name).is_file():
                    problems.append(f"{key}: missing {folder / name}")
    for entry in ledger.get("secondary", []):
        if entry["verdict"] == "error":
            problems.append(f"secondary {entry['claim']} {entry['model']}-{entry['family']}: error")
    if not (Path(root) / "claims.html").is_file():
        problems.append(f"missing report {Path(root) / 'claims.html'}")
    return problems
