"""The verdict taxonomy, the threshold rules and Holm's family adjustment.

- ``supported``: the statistic meets the pre-registered threshold (the test passes);
- ``not supported``: it does not (the test fails with a one-line finding, no traceback);
- ``inconclusive``: a pre-registered minimum was not met or the statistic is undefined
  (the test is an xfail with the reason);
- ``error``: anything else: broken machinery or data;
- ``skipped``: with the reason (weights not supplied, not in this profile);
- ``reported``: a secondary analysis, never a verdict.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

from listenkit.stats.significance import holm

__all__ = ["VERDICTS", "NotSupported", "holds", "holm_adjusted"]

VERDICTS = ("supported", "not supported", "inconclusive", "error", "skipped", "reported")

_RULES = {">=": operator.ge, ">": operator.gt, "<": operator.lt, "<=": operator.le}


class NotSupported(AssertionError):
    """A claim's statistic missed its threshold: a finding, not a failure of the code."""


def holds(observed: float, rule: str, threshold: float) -> bool:
    """``observed <rule> threshold`` (rule one of ``>=``, ``>``, ``<``, ``<=``); a NaN
    or None observed value never holds."""
    if observed is None or observed != observed:
        return False
    return bool(_RULES[rule](observed, threshold))


def holm_adjusted(p_values: Mapping[str, float], cell: str) -> tuple[float, int]:
    """Holm's step-down adjusted p of ``cell`` within the family ``p_values`` (cell ->
    raw p), and the family's size."""
    cells: Sequence[str] = sorted(p_values)
    adjusted = holm([float(p_values[c]) for c in cells])
    return float(adjusted[cells.index(cell)]), len(cells)
