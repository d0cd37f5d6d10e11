"""Where a cached stage came from, when a run adopted it from an earlier commit.

An analysis cache key covers the salt (the pre-registration and the suite's code) and
listenkit's code, so an amendment that changes only how verdicts read finished stages
would make a run recompute hours of sweeps. An ``Origin`` is an earlier commit's salt
and code hash: an ``AnalysisCache`` given origins, on a miss, looks for the entry (or
its batch checkpoint) under each origin's key and copies it to the new key, with
``<key>.origin.json`` beside it. Whether the two commits compute the stages the same
way is the researcher's call, stated in the pre-registration; the evidence lists every
adopted stage (``stages_adopted``), so a reader sees which numbers came from where.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Origin", "copy_atomic", "origin_file", "read_origin", "write_origin"]


@dataclass(frozen=True)
class Origin:
    """An earlier commit's cache-key inputs: ``salt`` (pre-registration sha256 + suite
    sha256, as the claims plugin forms it) and ``code_sha256`` (its listenkit code)."""

    commit: str
    salt: str
    code_sha256: str


def origin_file(entry: Path) -> Path:
    """``<key>.origin.json`` for the entry ``<key>.npz``."""
    return entry.with_suffix(".origin.json")


def write_origin(entry: Path, record: dict[str, Any]) -> None:
    """Write the adoption record beside ``entry`` (atomically)."""
    target = origin_file(entry)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, target)


def read_origin(entry: Path) -> dict[str, Any] | None:
    """The adoption record beside ``entry``, or None (computed here, or unreadable)."""
    try:
        record = json.loads(origin_file(entry).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` so that a reader never sees half a file."""
    tmp = target.with_name(target.name + ".adopting")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
