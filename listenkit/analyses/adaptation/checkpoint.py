"""A training run's state on disk, so that a killed run resumes at its last checkpoint.

Every ``every`` steps the trainer saves (atomically) the step, every trained tensor,
the optimiser's and the schedule's state, torch's RNG state and the log so far. A
resumed run restores all of it and skips the minibatches already taken (they come from
a seeded permutation), so its result is bit for bit the uninterrupted run's
(``tests/test_adaptation.py``). The file is read with ``torch.load(weights_only=True)``:
tensors, numbers and lists only, never code.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from listenkit.models.cache import CacheWarning, atomic_torch_save

__all__ = ["TrainingCheckpoint"]


class TrainingCheckpoint:
    """One training run's checkpoint file at ``path``, written every ``every`` steps."""

    def __init__(self, path: str | Path, *, every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.path = Path(path)
        self.every = every

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (no file; an unreadable file is set aside with a
        warning and the run starts from step 0)."""
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, weights_only=True)
        except Exception as err:  # truncated or foreign file: never resume from it
            warnings.warn(
                f"training checkpoint {self.path.name} is unreadable ({err}); starting over",
                CacheWarning,
                stacklevel=2,
            )
            return None

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (a temporary file renamed over ``path``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.path, state)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
