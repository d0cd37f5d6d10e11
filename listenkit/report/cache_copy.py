"""Copy a long run's work out of its cache (``listenkit status --copy-to DIR``).

A full-profile run can outlive its machine only if its finished stages, batch
checkpoints, trained adapters and training checkpoints are kept somewhere else (a git
commit, a bucket). This copies ``<cache>/analyses`` and ``<cache>/adapters`` to ``DIR``
(models and stimuli are not copied: both are rebuilt from their sources), only what
changed since the last copy (size and modification time). Restore with
``cp -r DIR/. <cache>/`` while no run uses the cache: the run resumes where the copy
was taken.

Every file the cache keeps is written whole and renamed into place (a finished adapter
folder too), so a copy taken while the run writes holds the old file or the new one,
never half of each; a file that disappears during the copy (its stage just finished) is
skipped. Locks (``*.lock``), temporary files (``*.tmp``, ``*.adopting``) and staging
folders (``.<name>.*/``) are not copied, nor a checkpoint whose finished result the
cache already holds.

``DIR`` keeps what the cache no longer has, except what the cache has finished: a file
of entry ``<key>`` (its ``.partial.npz``, ``.origin.json``) is dropped once the cache
holds ``<key>.npz`` without it, and a file of adapter ``<name>`` (its training
checkpoint, an old file of its folder) once the cache holds ``<name>/files.json``
without it. So a copy to ``DIR`` from another cache never deletes what ``DIR`` holds.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CopySummary", "copy_run"]

FOLDERS = ("analyses", "adapters")
_ENTRY_SUFFIXES = (".partial.npz", ".origin.json", ".npz")
_CHECKPOINT = ".checkpoint.pt"


@dataclass(frozen=True)
class CopySummary:
    """``copied``/``unchanged``: files written / skipped as unchanged; ``vanished``: files
    that disappeared while being copied; ``removed``: files dropped from the copy (the
    cache finished what they belonged to); ``bytes_copied``: the size written, in bytes."""

    copied: int
    unchanged: int
    removed: int
    bytes_copied: int
    vanished: int = 0


def _temporary(relative: Path) -> bool:
    """A lock, a temporary file, or a file inside a staging folder (``.<name>.*/``)."""
    staging = any(part.startswith(".") for part in relative.parts[1:-1])
    return relative.name.endswith((".lock", ".tmp", ".adopting")) or staging


def _owner(relative: Path) -> Path | None:
    """The finished file that supersedes ``relative`` once the cache holds it:
    ``analyses/<key>.npz`` for the files of an entry, ``adapters/<name>/files.json``
    for an adapter's checkpoint and folder; None for anything else."""
    folder, name = relative.parts[0], relative.name
    if folder == "analyses" and len(relative.parts) == 2:
        for suffix in _ENTRY_SUFFIXES:
            if name.endswith(suffix):
                return Path("analyses") / (name.removesuffix(suffix) + ".npz")
    if folder == "adapters" and len(relative.parts) == 2 and name.endswith(_CHECKPOINT):
        return Path("adapters") / name.removeprefix(".").removesuffix(_CHECKPOINT) / "files.json"
    if folder == "adapters" and len(relative.parts) > 2:
        return Path("adapters") / relative.parts[1] / "files.json"
    return None


def _superseded(relative: Path, root: Path) -> bool:
    """A checkpoint the cache at ``root`` has finished (its result is stored there)."""
    owner = _owner(relative)
    is_checkpoint = relative.name.endswith((".partial.npz", _CHECKPOINT))
    return is_checkpoint and owner is not None and (root / owner).is_file()


def _files(root: Path) -> dict[Path, Path]:
    """Every file to copy under ``root``'s folders, by its path relative to ``root``."""
    out: dict[Path, Path] = {}
    for folder in FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            relative = path.relative_to(root)
            if _temporary(relative) or _superseded(relative, root) or not path.is_file():
                continue
            out[relative] = path
    return out


def _copy(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` unless both have the same size and modification
    time; the bytes and the time come from one open file, so a file replaced meanwhile
    is copied whole with its own time. Returns ``copied``, ``unchanged`` or ``vanished``
    (``source`` disappeared)."""
    try:
        handle = source.open("rb")
    except FileNotFoundError:
        return "vanished"
    with handle:
        stat = os.fstat(handle.fileno())
        if target.is_file():
            old = target.stat()
            if old.st_size == stat.st_size and old.st_mtime_ns == stat.st_mtime_ns:
                return "unchanged"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.copy.tmp")
        with partial.open("wb") as out:
            shutil.copyfileobj(handle, out)
        os.utime(partial, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        partial.replace(target)
        return "copied"


def copy_run(cache: str | Path, to: str | Path) -> CopySummary:
    """Copy ``cache``'s analyses and adapters to ``to`` (see the module docstring).

    Raises ``FileNotFoundError`` when ``cache`` has neither folder."""
    cache, to = Path(cache), Path(to)
    if not any((cache / f).is_dir() for f in FOLDERS):
        raise FileNotFoundError(f"no analyses or adapters under {cache}")
    files = _files(cache)
    counts = {"copied": 0, "unchanged": 0, "vanished": 0}
    size = 0
    for relative, source in sorted(files.items()):
        done = _copy(source, to / relative)
        counts[done] += 1
        size += (to / relative).stat().st_size if done == "copied" else 0
    removed = 0
    for folder in FOLDERS:
        base = to / folder
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            relative = path.relative_to(to)
            if not path.is_file() or relative in files or _temporary(relative):
                continue
            owner = _owner(relative)
            if owner is not None and owner != relative and (cache / owner).is_file():
                path.unlink()
                removed += 1
    return CopySummary(counts["copied"], counts["unchanged"], removed, size, counts["vanished"])
