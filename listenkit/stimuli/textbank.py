"""The project's English text bank (``listenkit/data/textbank_v1.txt``)."""

from __future__ import annotations

import hashlib
import importlib.resources

__all__ = ["TEXTBANK_VERSION", "split_textbank", "textbank"]

TEXTBANK_VERSION = 1


def textbank(version: int = TEXTBANK_VERSION) -> tuple[str, ...]:
    """The sentences of text bank ``version``, in file order (comment lines dropped)."""
    resource = importlib.resources.files("listenkit") / "data" / f"textbank_v{version}.txt"
    if not resource.is_file():
        raise FileNotFoundError(f"no text bank version {version} ({resource})")
    lines = resource.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _bucket(salt: str, text: str) -> int:
    """First byte of ``sha256(salt + "\\x1f" + text)``: 0..255."""
    return hashlib.sha256(f"{salt}\x1f{text}".encode()).digest()[0]


def split_textbank(
    salt: str,
    *,
    eval_below: int,
    validation_below: int,
    version: int = TEXTBANK_VERSION,
) -> dict[str, tuple[str, ...]]:
    """Disjoint ``train`` / ``validation`` / ``eval`` sentences of the text bank, in file
    order, by a hash of each sentence: ``b = sha256(salt + "\\x1f" + text)[0]``;
    ``eval`` iff ``b < eval_below``; otherwise ``validation`` iff
    ``b < eval_below + validation_below``; otherwise ``train``. The validation split is
    part of the training sentences (recipe choice); ``eval`` is never trained on."""
    if not (0 < eval_below and 0 < validation_below and eval_below + validation_below < 256):
        raise ValueError("need 0 < eval_below, 0 < validation_below, their sum < 256")
    out: dict[str, list[str]] = {"train": [], "validation": [], "eval": []}
    for text in textbank(version):
        b = _bucket(salt, text)
        part = (
            "eval"
            if b < eval_below
            else "validation"
            if b < eval_below + validation_below
            else "train"
        )
        out[part].append(text)
    return {k: tuple(v) for k, v in out.items()}
