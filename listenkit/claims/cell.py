"""``Cell``: one claim on one (model, family) in one profile, as its test sees it.

Its identity comes from the test node (the plugin parametrises every ``claim`` test
over ``Preregistration.cells``); it carries the claim's pre-registered table, the
experiment's section, the resample count of the profile and one random stream per
purpose (SHA-256 of the seed and the full key). A test asks for the analysis, states
what a verdict needs (``require``) and hands its measurement to ``judge``, which adds
provenance, writes the evidence and the plot, and decides: the pytest outcome *is* the
verdict (for a p-value claim, the Holm-adjusted one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pytest

from listenkit.claims.preregistration import CellId
from listenkit.claims.verdicts import NotSupported, holds, holm_adjusted
from listenkit.report.evidence import evidence_dir_for, write_json_atomic
from listenkit.stats import seeded_generator

if TYPE_CHECKING:
    from listenkit.claims.session import ClaimsSession

__all__ = ["Cell", "Measurement"]


class Measurement(Protocol):
    """What a claim's statistic returns (``listenkit.experiments`` results do)."""

    observed: float | None

    def ledger(self) -> dict[str, Any]: ...  # key numbers for the verdict table

    def evidence(self) -> dict[str, Any]: ...  # everything, for evidence.json

    def finding(self, threshold: float) -> str: ...  # one line: why it is not supported

    def plot(self, path: Path, heading: str) -> None: ...  # draws nothing if it has no plot


class Probed(BaseException):
    """Raised by a probing cell's ``judge``: the raw p of a sibling in a Holm family (a
    BaseException, so that a test's own ``except Exception`` cannot swallow it)."""

    def __init__(self, p: float | None) -> None:
        super().__init__(p)
        self.p = p


class Cell:
    """A claim test's handle on its cell. Made by the ``cell`` fixture."""

    def __init__(self, cell: CellId, session: ClaimsSession, *, probe: bool = False) -> None:
        self.id = cell
        self.session = session
        self.probe = probe
        self.started = time.perf_counter()
        self.record: dict[str, Any] = {}  # what the plugin puts in the ledger entry

    claim = property(lambda self: self.id.claim)
    model = property(lambda self: self.id.model)
    family = property(lambda self: self.id.family)
    experiment = property(lambda self: self.id.experiment)
    kind = property(lambda self: self.id.kind)
    profile = property(lambda self: self.session.profile)

    @property
    def prereg(self):
        """The whole pre-registration (``listenkit.claims.Preregistration``)."""
        return self.session.prereg

    @property
    def spec(self) -> dict[str, Any]:
        """The claim's pre-registered table (statement, statistic, threshold, ...)."""
        return self.session.prereg.claim(self.claim)

    @property
    def section(self) -> dict[str, Any]:
        """The experiment's pre-registered section."""
        return self.session.prereg.section(self.claim)

    @property
    def resamples(self) -> int:
        """Bootstrap resamples (or random sets) of this profile."""
        return self.session.prereg.resamples(self.claim, self.profile)

    def minimum(self, name: str) -> int:
        """The pre-registered minimum ``name`` for this cell's profile and model."""
        return self.session.prereg.minimum(self.claim, name, profile=self.profile, model=self.model)

    def rng(self, *purpose: str) -> np.random.Generator:
        """An independent stream per (claim, model, family, purpose): SHA-256 of the
        experiment's seed and the full key."""
        return seeded_generator(self.section["seed"], self.claim, self.model, self.family, *purpose)

    @property
    def analysis(self) -> Any:
        """The experiment's analysis of this (model, family, profile), from the
        ``pytest_listenkit_analysis`` hook (computed once per process, cached on disk)."""
        return self.session.analysis(self)

    @property
    def folder(self) -> Path:
        prefix = "secondary/" if self.kind == "secondary" else ""
        return evidence_dir_for(self.session.root, f"{prefix}{self.claim}", self.model, self.family)

    # -- verdicts --------------------------------------------------------------------

    def require(
        self,
        ok: Any,
        reason: str = "",
        *,
        evidence: Mapping[str, Any] | None = None,
        measured: Measurement | None = None,
        **ledger: Any,
    ) -> None:
        """Unless ``ok``: the cell is inconclusive with ``reason`` (a pre-registered
        minimum not met, an undefined statistic); its evidence is written first. ``ok``
        may be a ``listenkit.experiments.Requirement`` (its reason, numbers, details).
        ``measured``: the claim's statistic, computed before the requirement could be
        checked (e.g. a control); an inconclusive cell still reports its numbers, its
        evidence and its plot, and its finding follows the reason (no verdict)."""
        __tracebackhide__ = True
        if hasattr(ok, "ok"):
            reason, ledger = ok.reason, {**ok.numbers, **ledger}
            evidence, ok = {**ok.details, **(evidence or {})}, ok.ok
        if ok:
            return
        if self.probe:
            raise Probed(None)
        if measured is not None:
            ledger = {**measured.ledger(), **ledger}
            evidence = {**measured.evidence(), **(evidence or {})}
            reason += f" (measured, not judged: {measured.finding(self.spec['threshold'])})"
        self.record.update({"statistic": self.spec["statistic"], **ledger})
        self._write(dict(evidence or {}) | {"reason": reason})
        if measured is not None:
            self._plot(measured)
        self.record["inconclusive_reason"] = reason
        pytest.xfail(f"inconclusive: {reason}")

    def judge(self, result: Measurement) -> None:
        """Record ``result`` (ledger numbers, evidence, plot) and decide: supported iff
        ``result.observed <rule> threshold``, the p-value of a Holm claim adjusted
        across its family first. Raises ``NotSupported`` (a finding) otherwise."""
        __tracebackhide__ = True
        if self.probe:
            raise Probed(result.observed)
        spec = self.spec
        observed = result.observed
        record = {"statistic": spec["statistic"], "threshold": spec["threshold"]}
        if self.session.prereg.holm(self.claim):
            family = self.session.family_p_values(self, observed)
            p_holm, cells = holm_adjusted(family, self.id.id)
            raw_holds = holds(observed, spec["rule"], spec["threshold"])
            record |= {
                "observed": round(p_holm, 6),
                "p_raw": round(observed, 6),
                "p_holm": round(p_holm, 6),
                "holm_cells": cells,
                "multiplicity": "holm",
                "alpha": spec["threshold"],
                "verdict_before_holm": "supported" if raw_holds else "not supported",
            }
            decided = p_holm
        else:
            record["observed"] = None if observed is None else round(observed, 4)
            decided = observed
        conditions = dict(getattr(result, "conditions", {}) or {})
        if set(conditions) != set(spec.get("also", [])):
            raise ValueError(
                f"{self.claim}: the statistic's conditions {sorted(conditions)} are not the "
                f"pre-registered ones (also = {spec.get('also', [])})"
            )
        if conditions:
            record["conditions"] = conditions
        self.record.update(record | result.ledger())
        evidence = result.evidence() | {"threshold": spec["threshold"], "rule": spec["rule"]}
        if "p_holm" in record:
            evidence |= {"holm_family": family, "holm_probe_errors": self.session.probe_errors}
        self._write(evidence | {k: record[k] for k in record if k.startswith(("p_", "holm"))})
        self._plot(result)
        failed = [name for name, ok in conditions.items() if ok is not True]
        if not holds(decided, spec["rule"], spec["threshold"]) or failed:
            prefix = f"{self.claim} not supported on {self.model}/{self.family}: "
            if "p_holm" in record:
                prefix += f"Holm p = {record['p_holm']:.3f} over {record['holm_cells']} cells; "
            if failed:
                prefix += f"condition not met: {', '.join(failed)}; "
            raise NotSupported(prefix + result.finding(spec["threshold"]))

    def report(self, result: Measurement) -> None:
        """Record a reported (secondary) analysis: ledger numbers, evidence and plot."""
        if self.probe:
            raise Probed(None)
        self.record.update({"statistic": self.spec.get("statistic", "")} | result.ledger())
        self._write(result.evidence())
        self._plot(result)

    # -- files -----------------------------------------------------------------------

    def _write(self, evidence: Mapping[str, Any]) -> Path:
        path = self.folder / "evidence.json"
        provenance = self.session.provenance(self)
        write_json_atomic(
            path,
            provenance
            | dict(evidence)
            | {"wall_time_s": round(time.perf_counter() - self.started, 2)},
        )
        self.record["evidence"] = str(path)
        return path

    def _plot(self, result: Measurement) -> None:
        path = self.folder / "plot.png"
        result.plot(path, f"{self.claim} {self.model} {self.family}")
        if path.is_file():
            self.record["plot"] = str(path)
