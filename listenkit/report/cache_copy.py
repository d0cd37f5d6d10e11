"""Copy a long run's work out of its cache (``listenkit status --copy-to DIR``).

A full-profile run can outlive its machine only if its finished stages, batch
checkpoints, trained adapters and training checkpoints are kept somewhere else (a git
commit, a bucket). This copies ``<cache>/analyses`` and ``<cache>/adapters`` to ``DIR``
(models and stimuli are not copied: both are rebuilt from their sources), only what
changed since the last copy (size and modification time), and drops from ``DIR`` a batch
or training checkpoint the cache no longer has (its stage or training finished).
Restore with ``cp -r DIR/. <cache>/``: the run resumes where the copy was taken.

Every file in the cache is written whole and renamed into place, so a copy taken while
the run writes is the old file or the new one, never half of each. Locks (``*.lock``),
temporary files (``*.tmp``) and staging folders (``.<name>.*/``) are not copied.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CopySummary", "copy_run"]

FOLDERS = ("analyses", "adapters")
CHECKPOINTS = (".partial.npz", ".checkpoint.pt")  # superseded when their run finishes


@dataclass(frozen=True)
class CopySummary:
    """``copied``/``unchanged``: files written / skipped; ``removed``: checkpoints dropped
    from the copy; ``bytes_copied``: their size in bytes."""

    copied: int
    unchanged: int
    removed: int
    bytes_copied: int


def _skipped(relative: Path) -> bool:
    """A lock, a temporary file, or a file inside a staging folder (``.<name>.*/``)."""
    staging = any(part.startswith(".") for part in relative.parts[1:-1])
    return relative.name.endswith((".lock", ".tmp")) or staging


def _files(root: Path) -> dict[Path, Path]:
    """Every file to copy under ``root``'s folders, by its path relative to ``root``."""
    out: dict[Path, Path] = {}
    for folder in FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            relative = path.relative_to(root)
            if path.is_file() and not _skipped(relative):
                out[relative] = path
    return out


def copy_run(cache: str | Path, to: str | Path) -> CopySummary:
    """Copy ``cache``'s analyses and adapters to ``to`` (see the module docstring).

    Raises ``FileNotFoundError`` when ``cache`` has neither folder."""
    cache, to = Path(cache), Path(to)
    if not any((cache / f).is_dir() for f in FOLDERS):
        raise FileNotFoundError(f"no analyses or adapters under {cache}")
    files = _files(cache)
    copied = unchanged = size = 0
    for relative, source in sorted(files.items()):
        target = to / relative
        stat = source.stat()
        if target.is_file():
            old = target.stat()
            if old.st_size == stat.st_size and old.st_mtime_ns == stat.st_mtime_ns:
                unchanged += 1
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.copy.tmp")
        shutil.copy2(source, partial)
        partial.replace(target)
        copied += 1
        size += stat.st_size
    removed = 0
    for folder in FOLDERS:
        base = to / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(to)
            if path.is_file() and path.name.endswith(CHECKPOINTS) and relative not in files:
                path.unlink()
                removed += 1
    return CopySummary(copied=copied, unchanged=unchanged, removed=removed, bytes_copied=size)
