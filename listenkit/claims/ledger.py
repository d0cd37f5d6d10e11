"""Evidence folders and the verdict ledger.

Layout under the evidence directory (default ``reports/``)::

    <claim>/<model>-<family>/evidence.json   numbers, provenance, seeds, hashes
    <claim>/<model>-<family>/plot.png
    secondary/<id>/<model>-<family>/...      reported analyses
    .ledger/<entry>.json                     one verdict per finished cell
    verdicts.json                            the ledger, sorted
    claims.html                              pytest-html report (self-contained)

A p-value claim's entry carries ``p_raw``, ``p_holm``, ``holm_cells`` and
``observed = p_holm``: its verdict (and its test's outcome) is the Holm-adjusted one;
``verdict_before_holm`` says what the raw p alone would have given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from listenkit.claims.verdicts import VERDICTS
from listenkit.report.evidence import evidence_dir_for, write_json_atomic

__all__ = ["collect_ledger", "validate_ledger", "write_ledger_entry"]


def _entry_key(entry: Mapping[str, Any]) -> tuple:
    return (entry["kind"], entry["claim"], entry["model"], entry["family"])


def write_ledger_entry(root: str | Path, entry: Mapping[str, Any]) -> Path:
    """Record one verdict (called once per cell, in whichever worker ran it)."""
    if entry["verdict"] not in VERDICTS:
        raise ValueError(f"unknown verdict {entry['verdict']!r}")
    name = hashlib.sha256(json.dumps(_entry_key(entry)).encode()).hexdigest()[:16]
    return write_json_atomic(Path(root) / ".ledger" / f"{name}.json", entry)


def collect_ledger(
    root: str | Path, *, profile: str, preregistration_version: int | None = None
) -> dict[str, Any]:
    """Gather the per-cell entries into ``verdicts.json`` content (sorted, no timings)."""
    entries = [json.loads(p.read_text()) for p in sorted((Path(root) / ".ledger").glob("*.json"))]
    for entry in entries:
        entry.pop("wall_time_s", None)
    entries.sort(key=_entry_key)
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
