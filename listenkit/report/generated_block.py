"""A generated block of a markdown page (``listenkit report ... --into FILE``).

Pages keep generated output between two markers, ``<!-- NAME:generated -->`` on its own
line and ``<!-- NAME:end -->``; tests check that the block equals the generator's output.
``paste`` writes that output between the markers, so nobody copies it by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["markers", "paste"]


def markers(name: str) -> tuple[str, str]:
    """(start, end) markers of block ``name``; the start includes its newline."""
    return f"<!-- {name}:generated -->\n", f"<!-- {name}:end -->"


def paste(path: str | Path, name: str, text: str) -> bool:
    """Replace block ``name`` of the page at ``path`` by ``text``; True if it changed.

    Raises ``ValueError`` when the page lacks either marker (or has the start twice)."""
    path = Path(path)
    page = path.read_text()
    start, end = markers(name)
    if page.count(start) != 1 or end not in page.split(start, 1)[1]:
        raise ValueError(f"{path} has no single block {start.strip()} ... {end}")
    head, rest = page.split(start, 1)
    tail = rest.split(end, 1)[1]
    new = head + start + text + end + tail
    if new == page:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return True
