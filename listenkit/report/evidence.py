"""Evidence files: JSON written atomically (numpy values converted, NaN -> null), the
folder of a cell's evidence, and the versions that shape the numbers. The ledger and
the verdicts are ``listenkit.claims``'s."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["environment", "evidence_dir_for", "write_json_atomic"]


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
