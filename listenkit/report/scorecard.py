"""The scorecard: one row per claim of the paper, its own words, what it predicts here,
and the published verdicts, generated from the ledgers (never typed).

``claims/scorecard.toml`` holds the words (quoted from the pitch, with their section)
and the concrete prediction of each claim; the verdicts come from the published
``verdicts.json`` files. For each claim the newest pre-registration version that has
published verdicts for it is shown (its version is in the row). A model with no verdict
is not a column: the mapping's ``not_run`` line says what was not run and why.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from listenkit.report.ledger_table import _number

__all__ = ["ScorecardRow", "html_scorecard", "load_mapping", "markdown_scorecard", "rows"]

MARK = {"supported": "✓", "not supported": "✗", "inconclusive": "?", "error": "ERROR"}
LEGEND = "✓ supported, ✗ not supported, ? inconclusive (the reason is in the report)"


def load_mapping(path: str | Path) -> dict[str, Any]:
    """The scorecard's words and predictions (``claims/scorecard.toml``)."""
    try:
        mapping = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"cannot read the scorecard mapping {path}: {err}") from err
    for row in mapping.get("claim", []):
        missing = {"id", "section", "words", "predicts"} - set(row)
        if missing:
            raise ValueError(f"{path}: claim {row.get('id', '?')} lacks {sorted(missing)}")
    return mapping


@dataclass(frozen=True)
class ScorecardRow:
    """One claim: its words and prediction, and its published cells per model."""

    claim: str
    section: str
    words: str
    predicts: str
    version: int | None
    cells: dict[str, list[tuple[str, str, str]]]  # model -> [(family, verdict, observed)]

    def finding(self, missing: str = "no published verdict yet") -> str:
        verdicts = [v for cells in self.cells.values() for _, v, _ in cells]
        if not verdicts:
            return missing
        counts = {v: verdicts.count(v) for v in MARK if verdicts.count(v)}
        return ", ".join(f"{k} in {n} of {len(verdicts)}" for k, n in counts.items())


def rows(ledgers: Sequence[Mapping[str, Any]], mapping: Mapping[str, Any]) -> list[ScorecardRow]:
    """The scorecard rows, in the mapping's order, from every published ledger."""
    entries = [
        {"preregistration_version": ledger.get("preregistration_version")} | e
        for ledger in ledgers
        for e in ledger["claims"]
        if e["verdict"] != "skipped"
    ]
    out = []
    for claim in mapping.get("claim", []):
        mine = [e for e in entries if e["claim"] == claim["id"]]
        version = max((e["preregistration_version"] for e in mine), default=None)
        cells: dict[str, list[tuple[str, str, str]]] = {}
        for e in sorted(mine, key=lambda e: (e["model"], e["family"])):
            if e["preregistration_version"] == version:
                cells.setdefault(e["model"], []).append((e["family"], e["verdict"], _observed(e)))
        out.append(ScorecardRow(claim["id"], claim["section"], claim["words"],
                                claim["predicts"], version, cells))  # fmt: skip
    return out


def _observed(entry: Mapping[str, Any]) -> str:
    """The cell's statistic: Holm-adjusted p where there is one, else the observed value."""
    if entry["verdict"] not in ("supported", "not supported"):
        return ""
    if "p_holm" in entry:
        return f"p {_number(entry['p_holm'])}"
    return _number(entry["observed"]) if "observed" in entry else ""


def _models(table: Sequence[ScorecardRow]) -> list[str]:
    return sorted({m for r in table for m in r.cells})


def _cell_text(cells: list[tuple[str, str, str]]) -> str:
    return (
        ", ".join(
            f"{MARK.get(v, v)} {family}" + (f" ({obs})" if obs else "") for family, v, obs in cells
        )
        or "-"
    )


def markdown_scorecard(ledgers: Sequence[Mapping[str, Any]], mapping: Mapping[str, Any]) -> str:
    """The scorecard as a Markdown table (and its legend and not-run line)."""
    table = rows(ledgers, mapping)
    models = _models(table)
    lines = [
        "| claim | the pitch's words | predicts here | " + " | ".join(models) + " | finding |",
        "|---|---|---|" + "---|" * len(models) + "---|",
    ]
    for r in table:
        version = f" (v{r.version})" if r.version else ""
        cells = " | ".join(_cell_text(r.cells.get(m, [])) for m in models)
        lines.append(f'| {r.claim}{version} | "{r.words}" ({r.section}) | {r.predicts} | '
                     f"{cells} | {r.finding()} |")  # fmt: skip
    lines += ["", LEGEND + ".", "", mapping.get("not_run", "")]
    return "\n".join(lines).rstrip() + "\n"


def html_scorecard(
    ledgers: Sequence[Mapping[str, Any]],
    mapping: Mapping[str, Any],
    *,
    missing: str = "no published verdict yet",
) -> str:
    """The same table as an HTML fragment (``<section id="scorecard">``); ``missing``:
    the finding of a claim without a verdict in ``ledgers``."""
    table = rows(ledgers, mapping)
    models = _models(table)
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in models)
    body = []
    for r in table:
        version = f" <small>v{r.version}</small>" if r.version else ""
        cells = "".join(f"<td>{e(_cell_text(r.cells.get(m, [])))}</td>" for m in models)
        body.append(f"<tr><td><b>{e(r.claim)}</b>{version}</td><td>&ldquo;{e(r.words)}&rdquo; "
                    f"<small>({e(r.section)})</small></td><td>{e(r.predicts)}</td>{cells}"
                    f"<td>{e(r.finding(missing))}</td></tr>")  # fmt: skip
    return (
        f'<section id="scorecard"><h2>Scorecard: {e(mapping.get("title", "the claims"))}</h2>'
        f"<table><tr><th>claim</th><th>the pitch's words</th><th>predicts here</th>{head}"
        f"<th>finding</th></tr>{''.join(body)}</table><p>{e(LEGEND)}. "
        f"{e(mapping.get('not_run', ''))}</p></section>"
    )
