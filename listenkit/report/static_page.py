"""One self-contained HTML page from a finished claims run's folder (ledger + evidence).

    listenkit report results/2026-11-27-full --html

Writes ``<run>/index.html``: the scorecard first (with the mapping of
``claims/scorecard.toml``), then the verdict matrix (profile, pre-registration
version), then one section per claim cell: statement, verdict, the one-line finding,
the numbers of the ledger entry and the evidence plot at full width (click to
enlarge), all embedded so the page opens offline. It re-renders a published run
without recomputing anything (pytest-html's ``claims.html`` is the report of a live run).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from listenkit.report.ledger_table import cell_anchor, html_matrix, load_ledger
from listenkit.report.scorecard import html_scorecard

__all__ = ["render_run"]

STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:90%}td,th{padding:3px 6px}"
    "section{border-top:1px solid #ccc;margin-top:1.5em}figcaption{color:#555}"
)


def _evidence(folder: Path, entry: dict) -> dict:
    evidence = folder / entry["claim"] / f"{entry['model']}-{entry['family']}" / "evidence.json"
    return json.loads(evidence.read_text()) if evidence.is_file() else {}


def _adopted(evidence: Mapping[str, Any]) -> str:
    """A line naming the commits whose stages the cell adopted (``--adopt-stages-from``)."""
    stages = evidence.get("stages_adopted") or []
    if not stages:
        return ""
    commits = sorted({str(s.get("from_commit", "?"))[:12] for s in stages})
    partial = sum(bool(s.get("partial")) for s in stages)
    return (
        f"<p>{len(stages)} analysis stage(s) adopted from commit {escape(', '.join(commits))}"
        + (f" ({partial} resumed from its batch checkpoint)" if partial else "")
        + f", judged at {escape(str(evidence.get('listenkit_commit', '?'))[:12])}: see "
        "<code>stages_adopted</code> in the cell's evidence.json and the pre-registration's "
        "amendments.</p>"
    )


def render_run(
    run: str | Path, out: str | Path | None = None, *, scorecard: Mapping[str, Any] | None = None
) -> Path:
    """Render ``run`` (a folder with ``verdicts.json``) to ``out`` (default
    ``<run>/index.html``), the scorecard first when its mapping is given; returns the
    path written."""
    folder = Path(run)
    ledger = load_ledger(folder)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>listenkit verdicts: "
        f"{escape(folder.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Verdicts: {escape(folder.name)}</h1>",
        html_scorecard([ledger], scorecard, missing="not in this run") if scorecard else "",
        f"<p><b>{escape(ledger['profile'])} profile</b>"
        + (" (underpowered)" if ledger["profile"] == "smoke" else "")
        + f", pre-registration version {escape(str(ledger['preregistration_version']))}; "
        "supported = the claim holds at its pre-registered threshold; not supported is a "
        "finding; inconclusive = a pre-registered minimum was not met.</p>",
        html_matrix(ledger),
    ]
    for entry in ledger["claims"]:
        numbers = "".join(
            f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
            for k, v in entry.items()
            if k not in ("kind", "message")
        )
        evidence = _evidence(folder, entry)
        statement = evidence.get("statement", "")
        section = (
            f'<section id="{escape(cell_anchor(entry))}"><h3>{escape(entry["claim"])} on '
            f"{escape(entry['model'])}, {escape(entry['family'])}: "
            f"{escape(entry['verdict'])}</h3><p>{escape(statement)}</p>"
        )
        if entry.get("message"):
            section += f"<p><b>{escape(entry['message'])}</b></p>"
        section += _adopted(evidence) + f"<table border='1'>{numbers}</table>"
        plot = folder / entry["claim"] / f"{entry['model']}-{entry['family']}" / "plot.png"
        if plot.is_file():
            data = base64.b64encode(plot.read_bytes()).decode()
            section += (
                f'<figure><a href="data:image/png;base64,{data}" target="_blank"><img '
                f'src="data:image/png;base64,{data}" style="width:100%"></a><figcaption>'
                f"{escape(entry['claim'])} on {escape(entry['model'])}, "
                f"{escape(entry['family'])}: the curve or map the statistic is computed from, "
                "with its 95% CI or null distribution (click to enlarge)</figcaption></figure>"
            )
        parts.append(section + "</section>")
    parts.append("</body></html>")
    target = Path(out) if out is not None else folder / "index.html"
    target.write_text("\n".join(parts), encoding="utf-8")
    return target
