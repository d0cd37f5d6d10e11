"""How long each cell of a run took: compute times read from its evidence files.

``listenkit report RUN... --times`` prints one row per (run, experiment, model, family): the
stage times every experiment records in its evidence (``timings_s``, seconds), their
total, and the listenkit commit that ran the cell. The cells of one experiment share
their stages (E1's C1, C1-sharp and C2 read one sweep), so each is counted once.

E3 adds a line per cell: the time per LoRA seed = the adapter's training time + the
sweeps and probes of its adapted encoder (``train_after-k_s + stage_after-k_s``), as
the mean and range over the seeds, and the same for the controls.

What a time covers: the compute time the evidence records, on the machine that ran
it. Two limits, so the commit is printed with each row:

- from commit 793d921 on, a stage resumed from a batch checkpoint and an E3 LoRA
  training resumed from its checkpoint count every process's part (the checkpoints
  keep their time); at earlier commits only the last process's part;
- a stage that stores no time of its own and was read from the cache counts about 0 s
  (E4's head sets; E1's sweeps when its analysis was computed after them).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CAVEAT", "CellTimes", "cell_times", "markdown_times"]

CAVEAT = (
    "Compute time as the evidence records it. Before commit 793d921, a stage resumed "
    "from a batch checkpoint counts only its last process's part; a stage read from "
    "the cache that keeps no time of its own counts about 0 s (E4's head sets)."
)

_SEED = re.compile(r"^(train|stage)_after-(\d+)_s$")
_CONTROL = re.compile(r"^(train|stage)_(control[\w-]*)_s$")


@dataclass(frozen=True)
class CellTimes:
    """One cell of one run (its folder's name) with its stage times (seconds) and the
    claims that share them."""

    run: str
    experiment: str
    model: str
    family: str
    claims: tuple[str, ...]
    stages: Mapping[str, float]
    commit: str

    @property
    def total_s(self) -> float:
        return float(sum(self.stages.values()))

    def per_seed_s(self) -> list[float]:
        """E3: training + adapted-encoder stage per LoRA seed (``after-k``), by k."""
        return _grouped(self.stages, _SEED)

    def per_control_s(self) -> dict[str, float]:
        """E3: training + stage per control adapter, by name."""
        out: dict[str, float] = {}
        for name, seconds in self.stages.items():
            match = _CONTROL.match(name)
            if match:
                out[match[2]] = out.get(match[2], 0.0) + float(seconds)
        return out


def _grouped(stages: Mapping[str, float], pattern: re.Pattern) -> list[float]:
    by_seed: dict[int, float] = {}
    for name, seconds in stages.items():
        match = pattern.match(name)
        if match:
            by_seed[int(match[2])] = by_seed.get(int(match[2]), 0.0) + float(seconds)
    return [by_seed[k] for k in sorted(by_seed)]


def _evidence_files(run: Path) -> list[Path]:
    return sorted(p for p in run.glob("*/*/evidence.json") if p.parent.parent.name != "secondary")


def cell_times(runs: Sequence[str | Path], experiment_of: Mapping[str, str]) -> list[CellTimes]:
    """Every cell with recorded stage times in the run folders ``runs`` (published or
    ``reports/``), one per (experiment, model, family); ``experiment_of`` maps a claim
    to its experiment (``amendments_from``'s second value). A claim without one is its
    own experiment."""
    found: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for run in runs:
        for path in _evidence_files(Path(run)):
            evidence = json.loads(path.read_text())
            timings = evidence.get("timings_s") or {}
            claim = str(evidence.get("claim", path.parent.parent.name))
            model = str(evidence.get("model", ""))
            folder = path.parent.name  # <model>-<family> (E3's "family" field describes it)
            family = folder.removeprefix(f"{model}-") if model else folder
            key = (Path(run).name, experiment_of.get(claim, claim), model, family)
            cell = found.setdefault(key, {"claims": set(), "stages": {}, "commit": ""})
            cell["claims"].add(claim)
            for stage, seconds in timings.items():  # claims of a cell share stages
                if isinstance(seconds, (int, float)):
                    cell["stages"][stage] = max(cell["stages"].get(stage, 0.0), float(seconds))
            cell["commit"] = cell["commit"] or str(evidence.get("listenkit_commit") or "")
    return [
        CellTimes(
            run=run,
            experiment=experiment,
            model=model,
            family=family,
            claims=tuple(sorted(cell["claims"])),
            stages=dict(cell["stages"]),
            commit=cell["commit"],
        )
        for (run, experiment, model, family), cell in sorted(found.items())
        if cell["stages"]
    ]


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _spread(values: list[float]) -> str:
    mean = _minutes(statistics.fmean(values))
    if len(values) == 1:
        return mean
    return f"{mean} (range {_minutes(min(values))}-{_minutes(max(values))}, {len(values)} seeds)"


def markdown_times(cells: Sequence[CellTimes]) -> str:
    """The cells' compute times as a Markdown table, then E3's time per seed."""
    if not cells:
        return "no evidence file records stage times\n"
    lines = [
        "| run | experiment | model | family | stages | total | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        stages = ", ".join(
            f"{name.removesuffix('_s')} {_minutes(s)}" for name, s in sorted(cell.stages.items())
        )
        lines.append(
            f"| {cell.run} | {cell.experiment} | {cell.model} | {cell.family} | {stages} | "
            f"{_minutes(cell.total_s)} | {cell.commit[:7] or 'unknown'} |"
        )
    lines += ["", CAVEAT]
    seeds = [cell for cell in cells if cell.per_seed_s()]
    if seeds:
        lines += [
            "",
            "Time per LoRA seed (training + the adapted encoder's probes and sweeps):",
            "",
        ]
        for cell in seeds:
            controls = cell.per_control_s()
            line = f"- {cell.run}, {cell.model} {cell.family}: {_spread(cell.per_seed_s())}"
            if controls:
                line += "; controls " + ", ".join(
                    f"{name} {_minutes(s)}" for name, s in sorted(controls.items())
                )
            lines.append(line)
    return "\n".join(lines) + "\n"
