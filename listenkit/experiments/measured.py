"""What an experiment's claim statistic returns, and what a verdict requires.

``Measured`` is the one result type the claims plugin judges (``Cell.judge``): the
observed statistic, the key numbers for the ledger, the evidence, the finding (one line,
when the threshold is missed) and the plot. ``Requirement`` is a pre-registered minimum
(``Cell.require``): below it the cell is inconclusive, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Measured", "Requirement", "enough_in_halves"]


@dataclass(frozen=True, kw_only=True)
class Measured:
    """A claim's statistic on one cell.

    ``observed`` is compared with the claim's threshold by its rule; ``conditions`` are
    the claim's further pre-registered conditions (name -> holds; None: undefined, which
    does not hold), all required for "supported"; ``numbers`` go into the ledger,
    ``details`` into ``evidence.json``; ``why_not(threshold)`` is the one-line finding;
    ``draw(path, heading)`` draws the plot (``heading``: claim, model, family)."""

    observed: float | None
    conditions: dict[str, bool | None] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    why_not: Callable[[float], str] | None = None
    draw: Callable[[Path, str], None] | None = None

    def ledger(self) -> dict[str, Any]:
        return dict(self.numbers)

    def evidence(self) -> dict[str, Any]:
        return dict(self.details)

    def finding(self, threshold: float) -> str:
        if self.why_not is not None:
            return self.why_not(threshold)
        return f"observed {self.observed:.4g}, threshold {threshold:g}"

    def plot(self, path: Path, heading: str) -> None:
        if self.draw is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.draw(path, heading)


@dataclass(frozen=True, kw_only=True)
class Requirement:
    """A pre-registered minimum: ``ok``, else inconclusive with ``reason``."""

    ok: bool
    reason: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def enough_in_halves(
    in_a: Any, minimum: int, unit: str, numbers: dict[str, Any], details: dict[str, Any]
) -> tuple[dict[str, int], Requirement]:
    """The halves' sizes of a cross-fitted split (``in_a``: a boolean mask) and the
    requirement that each holds ``minimum`` stimuli (``unit``: what they are)."""
    halves = {"n_a": int(in_a.sum()), "n_b": int((~in_a).sum())}
    return halves, Requirement(
        ok=min(halves.values()) >= minimum,
        reason=f"halves of {halves} {unit}; the pre-registered minimum is {minimum}",
        numbers=numbers | halves,
        details=details | halves,
    )
