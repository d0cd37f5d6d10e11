"""What every patching result shares: which stimuli pass the signed floor, and the curve
as a ratio of means over them (or over a subset of them).

A result (``Sweep``, ``HeadSweep``, ``GroundingSweep``) keeps per-stimulus metric
values. Its ``gaps()`` are the per-stimulus differences each of which must reach the
floor (signed: the corruption must move the metric the expected way): ``included`` is
the mask of stimuli where all do. ``ratio(rows)`` is the effect as a
``RatioOfMeans`` over the included stimuli, or over ``rows`` of them (a boolean mask or
an index into the included stimuli, e.g. half A of a cross-fitted split).
"""

from __future__ import annotations

import numpy as np

from listenkit.stats import RatioOfMeans

__all__ = ["StimulusEffects"]


class StimulusEffects:
    """Mixin for frozen result dataclasses with ``ids`` and ``floor`` fields."""

    ids: tuple[str, ...]
    floor: float

    def gaps(self) -> tuple[np.ndarray, ...]:
        """Per-stimulus gaps that must each be >= ``floor`` (nats)."""
        raise NotImplementedError

    @property
    def included(self) -> np.ndarray:
        """The signed floor: every gap of a stimulus >= ``floor``."""
        keep = np.ones(len(self.ids), dtype=bool)
        for gap in self.gaps():
            keep &= np.asarray(gap) >= self.floor
        return keep

    @property
    def included_ids(self) -> tuple[str, ...]:
        return tuple(i for i, keep in zip(self.ids, self.included, strict=True) if keep)

    @property
    def excluded_ids(self) -> tuple[str, ...]:
        return tuple(i for i, keep in zip(self.ids, self.included, strict=True) if not keep)

    def rows(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Indices (into all stimuli) of the included ones, or of ``rows`` of them."""
        keep = np.flatnonzero(self.included)
        if not keep.size:
            raise ValueError(f"no stimulus passes the signed floor (>= {self.floor} nats)")
        return keep if rows is None else keep[rows]

    def ratio(self, rows: np.ndarray | None = None) -> RatioOfMeans:
        """The effect per layer (or head) as a ratio of means over the included stimuli
        (or ``rows`` of them)."""
        raise NotImplementedError
