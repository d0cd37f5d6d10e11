"""A converted-weights cache that is safe under concurrent first use.

Layout: ``<cache root>/models/<key>.pt`` with a sidecar ``<key>.pt.json`` that
records the file's sha256. Writers hold ``<key>.pt.lock`` (a ``filelock`` lock),
write to a temporary file in the same directory and ``os.replace`` it into place,
so a reader never sees a half-written file. A file whose hash does not match its
sidecar is rebuilt with a ``CacheWarning``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs
import torch
from filelock import FileLock

__all__ = ["CacheWarning", "atomic_torch_save", "cache_root", "cached_torch_file", "sha256_file"]

CACHE_ENV = "LISTENKIT_CACHE"


class CacheWarning(UserWarning):
    """A cache entry was invalid and has been rebuilt."""


def cache_root() -> Path:
    """The cache directory: ``$LISTENKIT_CACHE`` or the platform user cache dir."""
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured) if configured else Path(platformdirs.user_cache_dir("listenkit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(path: Path, obj: Any) -> str:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``;
    returns the file's sha256."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        digest = sha256_file(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def _valid(path: Path, sidecar: Path) -> tuple[bool, str]:
    if not path.exists() or not sidecar.exists():
        return False, "missing"
    try:
        recorded = json.loads(sidecar.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        return False, f"unreadable record {sidecar}"
    actual = sha256_file(path)
    if actual != recorded:
        return False, f"sha256 {actual[:12]}... does not match the recorded {recorded[:12]}..."
    return True, "ok"


def cached_torch_file(
    key: str, build: Callable[[], Any], *, meta: dict[str, Any] | None = None
) -> tuple[Path, bool]:
    """Return ``(path, built)`` for a ``torch.save``d object cached under ``key``.

    ``build()`` runs at most once across processes racing on a cold cache; later
    calls verify the recorded sha256 and rebuild (with a ``CacheWarning``) on a
    mismatch. ``built`` says whether this call ran ``build``.
    """
    path = cache_root() / "models" / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_name(path.name + ".json")
    ok, _ = _valid(path, sidecar)
    if ok:
        return path, False
    with FileLock(str(path) + ".lock"):
        ok, reason = _valid(path, sidecar)  # another process may have built it meanwhile
        if ok:
            return path, False
        if reason != "missing":
            warnings.warn(
                f"listenkit cache {path}: {reason}; rebuilding", CacheWarning, stacklevel=2
            )
        digest = atomic_torch_save(path, build())
        record = {"sha256": digest, "key": key, **(meta or {})}
        _atomic_write_bytes(sidecar, json.dumps(record, indent=2, sort_keys=True).encode())
    return path, True
