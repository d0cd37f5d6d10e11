"""The verdict ledger as tables: a Markdown verdict matrix, and what changed between two.

``listenkit report LEDGER --markdown`` prints the matrix (rows = claims, columns =
model x family, each cell the verdict and the observed statistic; several ledgers of
distinct runs are merged into one matrix); ``listenkit report
OLD NEW --compare`` lists the cells whose verdict changed. The README's verdict tables
are generated this way, never typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "cell_anchor",
    "compare_ledgers",
    "html_matrix",
    "load_ledger",
    "markdown_matrix",
    "merge_ledgers",
]

SYMBOL = {
    "supported": "**supported**",
    "not supported": "not supported",
    "inconclusive": "inconclusive",
    "skipped": "skipped",
    "error": "ERROR",
}


def load_ledger(path: str | Path) -> dict[str, Any]:
    """A ``verdicts.json`` (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "verdicts.json"
    try:
        ledger = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read a verdict ledger from {path}: {err}") from err
    if "claims" not in ledger:
        raise ValueError(f"{path} is not a verdict ledger (no 'claims')")
    return ledger


def merge_ledgers(ledgers: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Several runs' ledgers as one (e.g. the published full-profile runs of different
    experiments). They must share the profile and the pre-registration version, and no
    (claim, model, family) cell may come from two of them."""
    if not ledgers:
        raise ValueError("no ledgers to merge")
    for key in ("profile", "preregistration_version"):
        values = {ledger.get(key) for ledger in ledgers}
        if len(values) > 1:
            raise ValueError(
                f"ledgers of different {key}s cannot be merged: {sorted(map(str, values))}"
            )
    seen: set[tuple[str, str, str]] = set()
    twice = set()
    for ledger in ledgers:
        for e in ledger["claims"]:
            cell = (e["claim"], e["model"], e["family"])
            (twice if cell in seen else seen).add(cell)
    if twice:
        listed = ", ".join(" ".join(c) for c in sorted(twice))
        raise ValueError(f"cells in more than one ledger: {listed}; merge distinct runs only")
    return {
        "profile": ledgers[0].get("profile"),
        "preregistration_version": ledgers[0].get("preregistration_version"),
        "underpowered": any(ledger.get("underpowered") for ledger in ledgers),
        "claims": [e for ledger in ledgers for e in ledger["claims"]],
    }


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(_number(v) for v in value) + "]"
    return "n/a" if value is None else str(value)


def _cell(entry: Mapping[str, Any]) -> str:
    verdict = SYMBOL.get(entry["verdict"], entry["verdict"])
    if entry["verdict"] in ("supported", "not supported") and "observed" in entry:
        text = f"{verdict} ({_number(entry['observed'])})"
        if "p_holm" in entry:
            text = f"{verdict} (Holm p {_number(entry['p_holm'])}, raw {_number(entry['p_raw'])})"
        return text + (" †" if entry.get("caveat") else "")
    return verdict


def markdown_matrix(ledger: Mapping[str, Any]) -> str:
    """Rows = claims (with the statistic and threshold), columns = model-family cells."""
    claims = ledger["claims"]
    columns = sorted({(e["model"], e["family"]) for e in claims})
    rows: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {}
    for e in claims:
        rows.setdefault(e["claim"], {})[(e["model"], e["family"])] = e
    version = ledger.get("preregistration_version")
    lines = [
        f"Profile: {ledger.get('profile')}"
        + (" (underpowered)" if ledger.get("underpowered") else "")
        + f"; pre-registration version {version}.",
        "",
        "| claim | " + " | ".join(f"{m} {f}" for m, f in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    legend = []
    for claim, cells in sorted(rows.items()):
        row = [_cell(cells[c]) if c in cells else "" for c in columns]
        lines.append(f"| {claim} | " + " | ".join(row) + " |")
        stated = [e for e in cells.values() if e.get("statistic") and "threshold" in e]
        if stated:
            legend.append(
                f"- {claim}: {stated[0]['statistic']}; threshold {_number(stated[0]['threshold'])}"
            )
    lines += ["", "Cells: verdict (observed statistic).", *legend]
    if any(e.get("caveat") for e in claims):
        lines.append("- † the entry carries a caveat (see the ledger).")
    return "\n".join(lines) + "\n"


def compare_ledgers(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per (claim, model, family) whose verdict differs, appeared or disappeared."""

    def index(ledger):
        return {(e["claim"], e["model"], e["family"]): e for e in ledger["claims"]}

    a, b = index(old), index(new)
    out = []
    for key in sorted(set(a) | set(b)):
        va = a[key]["verdict"] if key in a else "absent"
        vb = b[key]["verdict"] if key in b else "absent"
        if va != vb:
            detail = ""
            if key in a and key in b:
                detail = f" (observed {_number(a[key].get('observed'))} -> "
                detail += f"{_number(b[key].get('observed'))})"
            out.append(f"{key[0]} {key[1]} {key[2]}: {va} -> {vb}{detail}")
    return out


COLOURS = {
    "supported": "#c8e6c9",
    "not supported": "#ffe0b2",
    "inconclusive": "#e0e0e0",
    "skipped": "#f5f5f5",
    "error": "#ef9a9a",
}


def html_matrix(ledger: Mapping[str, Any], *, anchors: bool = True) -> str:
    """The verdict matrix as an HTML table: rows = claims, columns = model x family; each
    cell says its verdict in words (colour only helps) and the observed statistic."""
    from html import escape

    claims = ledger["claims"]
    columns = sorted({(e["model"], e["family"]) for e in claims})
    rows: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {}
    for e in claims:
        rows.setdefault(e["claim"], {})[(e["model"], e["family"])] = e
    head = "".join(f"<th>{escape(m)}<br>{escape(f)}</th>" for m, f in columns)
    body = []
    for claim, cells in sorted(rows.items()):
        tds = []
        for column in columns:
            e = cells.get(column)
            if e is None:
                tds.append("<td></td>")
                continue
            text = escape(_cell(e).replace("**", ""))
            if anchors:
                text = f'<a href="#{escape(cell_anchor(e))}">{text}</a>'
            tds.append(f'<td style="background:{COLOURS.get(e["verdict"], "#fff")}">{text}</td>')
        body.append(f"<tr><th>{escape(claim)}</th>{''.join(tds)}</tr>")
    return (
        '<table class="verdict-matrix" border="1" cellpadding="4" style="border-collapse:'
        f'collapse"><tr><th>claim</th>{head}</tr>{"".join(body)}</table>'
    )


def cell_anchor(entry: Mapping[str, Any]) -> str:
    """The HTML id of a claim cell's section in the report."""
    return f"{entry['claim']}-{entry['model']}-{entry['family']}".replace(".", "_")
