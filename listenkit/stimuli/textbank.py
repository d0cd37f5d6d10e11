"""The project's English text bank (``listenkit/data/textbank_v1.txt``)."""

from __future__ import annotations

import importlib.resources

__all__ = ["TEXTBANK_VERSION", "textbank"]

TEXTBANK_VERSION = 1


def textbank(version: int = TEXTBANK_VERSION) -> tuple[str, ...]:
    """The sentences of text bank ``version``, in file order (comment lines dropped)."""
    resource = importlib.resources.files("listenkit") / "data" / f"textbank_v{version}.txt"
    if not resource.is_file():
        raise FileNotFoundError(f"no text bank version {version} ({resource})")
    lines = resource.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
