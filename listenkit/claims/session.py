"""What one claims run shares: the pre-registration, the profile, the evidence folder,
the analysis cache, the analyses computed in this process and the Holm families.

A p-value claim is judged on its Holm-adjusted p (pre-registration v3: the family is
every cell of the claim's grid in the profile; a cell that gives no p in the run counts
as p = 1). So that the test's outcome is that verdict, in whichever worker runs it, the
cell's test body is also run for each sibling cell in *probe* mode: the sibling's
analysis comes from the disk cache (or is computed once, under its lock), ``judge``
returns its raw p instead of recording, and a sibling that is inconclusive or skipped
gives no p (so p = 1). Every worker therefore sees the same family.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from listenkit.claims.cell import Cell, Probed
from listenkit.claims.preregistration import CellId, Preregistration
from listenkit.experiments.cache import AnalysisCache, code_sha256
from listenkit.report.evidence import environment
from listenkit.stage_origin import Origin

__all__ = ["ClaimsSession"]


class ClaimsSession:
    """Shared state of a claims run (one per process; under xdist one per worker)."""

    def __init__(
        self,
        config: pytest.Config,
        prereg: Preregistration,
        *,
        profile: str,
        root: Path,
        fresh: bool,
        suite_sha256: str,
        adopt: tuple[Origin, ...] = (),
        started: float | None = None,
    ) -> None:
        self.config = config
        self.prereg = prereg
        self.profile = profile
        self.root = root
        # under --fresh, an entry another worker stored during this run is fresh too
        self.started = time.time() if started is None else started
        self.cache = AnalysisCache(
            salt=prereg.sha256 + suite_sha256, fresh=fresh, fresh_since=self.started, adopt=adopt
        )
        self._analyses: dict[tuple[str, str, str], Any] = {}
        self._adopted_by: dict[tuple[str, str, str], list[str]] = {}
        self._p_values: dict[CellId, float | None] = {}
        self._tests: dict[CellId, Callable[..., Any]] = {}
        self.probe_errors: dict[str, str] = {}
        self.suite_sha256 = suite_sha256

    def register(self, items: list[pytest.Item]) -> None:
        """Remember the claim tests that run (after every deselection: ``-k``, ``-m``,
        ``--models``, ``--lf``) as the Holm families' members, without those a skip mark
        skips. A p-value claim's test takes ``cell`` alone (it is also run as a probe)."""
        for item in items:
            cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
            if not isinstance(cell, CellId) or _skipped_by_mark(item):
                continue
            others = set(inspect.signature(item.obj).parameters) - {"cell"}
            if self.prereg.holm(cell.claim) and others:
                raise pytest.UsageError(
                    f"{item.nodeid}: a p-value claim's test takes only the cell fixture (its "
                    f"body is also run for its Holm siblings); it asks for {sorted(others)}"
                )
            self._tests[cell] = item.obj

    def analysis(self, cell: Cell) -> Any:
        """The ``pytest_listenkit_analysis`` hook's result for the cell, once per process per
        (experiment, model, family)."""
        key = (cell.experiment, cell.model, cell.family)
        if key not in self._analyses:
            reads = len(self.cache.adopted_reads)
            result = self.config.hook.pytest_listenkit_analysis(cell=cell)
            # the adopted entries this analysis read (--adopt-stages-from)
            self._adopted_by[key] = sorted(set(self.cache.adopted_reads[reads:]))
            if result is None:
                raise LookupError(
                    f"no pytest_listenkit_analysis hook returned an analysis for {cell.experiment} "
                    f"({cell.model}, {cell.family}): define one in the suite's conftest.py"
                )
            self._analyses[key] = result
        return self._analyses[key]

    def family_p_values(self, cell: Cell, p: float) -> dict[str, float]:
        """Raw p of every cell of ``cell``'s claim in the profile's grid (by id): the grid
        is fixed by the pre-registration, and a cell that gives no p in this run (not
        selected, skipped, inconclusive, broken) counts as ``p = 1``."""
        self._p_values[cell.id] = p
        tests = {other: test for other, test in self._tests.items() if other.claim == cell.claim}
        family = {}
        for other in self.prereg.cells(cell.claim):
            if self.prereg.not_in_profile(other, self.profile):
                continue
            if other not in self._p_values and other in tests:
                self._p_values[other] = self._probe(other, tests[other])
            value = self._p_values.get(other)
            family[other.id] = 1.0 if value is None else value
        return family

    def _probe(self, cell_id: CellId, test: Callable[..., Any]) -> float | None:
        """The sibling's raw p, or None when it gives none (not in the profile, skipped,
        inconclusive, or broken: its own test reports that)."""
        if self.prereg.not_in_profile(cell_id, self.profile):
            return None
        try:
            test(cell=Cell(cell_id, self, probe=True))
        except Probed as probed:
            return probed.p
        except (pytest.skip.Exception, pytest.xfail.Exception):
            return None
        except Exception as err:  # the sibling's own test reports it as an error
            self.probe_errors[cell_id.id] = f"{type(err).__name__}: {err}"[:300]
            return None
        return None

    def provenance(self, cell: Cell) -> dict[str, Any]:
        """What every evidence file says about where its numbers come from."""
        spec = cell.spec
        return {
            "claim": cell.claim,
            "model": cell.model,
            "family": cell.family,
            "profile": self.profile,
            "underpowered": self.profile == "smoke",
            "statement": spec.get("statement", ""),
            "source": spec.get("source", ""),
            "statistic": spec.get("statistic", ""),
            "preregistration_version": self.prereg.version,
            "preregistration_sha256": self.prereg.sha256,
            "seed": cell.section.get("seed"),
            "resamples": _maybe(lambda: cell.resamples),
            "listenkit_commit": git_commit(self.config.rootpath),
            "code_sha256": code_sha256(),
            "suite_sha256": self.suite_sha256,
            "versions": _environment(),
        } | self._adopted(cell)

    def _adopted(self, cell: Cell) -> dict[str, Any]:
        """``stages_adopted``: the entries the cell's analysis read that an earlier commit
        computed (or began: ``partial``), each with its adoption record (absent when none).
        The versions in ``versions`` are this process's; the cache does not keep the
        origin process's."""
        names = self._adopted_by.get((cell.experiment, cell.model, cell.family), [])
        stages = [{"stage": name, **self.cache.origins[name]} for name in names]
        return {"stages_adopted": stages} if stages else {}


@functools.cache
def _environment() -> dict[str, str]:
    """The versions that shape the numbers, read once per process."""
    return environment()


def _skipped_by_mark(item: pytest.Item) -> bool:
    if item.get_closest_marker("skip") is not None:
        return True
    for mark in item.iter_markers("skipif"):
        conditions = mark.args or (mark.kwargs.get("condition", True),)
        if any(c is True for c in conditions):
            return True
    return False


def _maybe(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except (KeyError, ValueError):
        return None


@functools.cache
def git_commit(root: Path) -> str:
    """The checkout's commit (with ``+changes`` when the work tree differs from it)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+changes" if dirty.strip() else "")


def folder_sha256(folder: Path) -> str:
    """sha256 over a folder's ``.py`` files (relative path + bytes): the suite's fixtures."""
    digest = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
