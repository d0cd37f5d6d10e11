"""The stored layout of a batch checkpoint: finished batches plus the compute time.

Format 2 (``pack``): ``{"listenkit_batch_checkpoint": 2, "seconds": s, "batches": {...}}``,
``seconds`` being the compute time spent up to the last written batch, over every
process that ran the computation. Format 1 (a bare ``{batch start: result}`` dict,
before 0.1's timing) reads as 0 s. Stage 0: the report reads it without experiments.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pack", "unpack"]

_FORMAT = "listenkit_batch_checkpoint"


def pack(batches: dict, seconds: float) -> dict:
    """What a checkpoint file stores for ``batches`` after ``seconds`` of compute."""
    return {_FORMAT: 2, "seconds": float(seconds), "batches": batches}


def unpack(stored: Any) -> tuple[dict, float]:
    """(batches, seconds) of a stored checkpoint; anything but a dict is empty."""
    if not isinstance(stored, dict):
        return {}, 0.0
    if stored.get(_FORMAT) == 2 and isinstance(stored.get("batches"), dict):
        return stored["batches"], float(stored.get("seconds", 0.0))
    return stored, 0.0
