"""Publish a claims run: copy the ledger, the report and the evidence into a folder that
is committed (``results/<date>-full/``), without stimulus audio or scratch files.

    listenkit report reports/ --publish results/2026-11-27-full
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["publish_run"]

KEEP = ("verdicts.json", "claims.html")
EVIDENCE = ("evidence.json", "plot.png")


def publish_run(source: str | Path, target: str | Path) -> list[Path]:
    """Copy ``verdicts.json``, ``claims.html`` and every ``<claim>/<cell>/evidence.json``
    and ``plot.png`` (secondary analyses included) from ``source`` to ``target``."""
    source, target = Path(source), Path(target)
    if not (source / "verdicts.json").is_file():
        raise FileNotFoundError(f"{source} has no verdicts.json: not a finished claims run")
    copied = []
    for name in KEEP:
        if (source / name).is_file():
            target.mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy2(source / name, target / name)))
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.name in EVIDENCE and not any(part.startswith(".") for part in relative.parts):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy2(path, target / relative)))
    return copied
