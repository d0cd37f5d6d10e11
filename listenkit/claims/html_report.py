"""The claims' part of the pytest-html report: the verdict matrix first, then for each
cell its statement, verdict, numbers and plot (no traceback for a finding)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from listenkit.report.ledger_table import cell_anchor, html_matrix
from listenkit.report.scorecard import html_scorecard, load_mapping

__all__ = ["cell_block", "summary_blocks"]


def cell_block(entry: Mapping[str, Any], spec: Mapping[str, Any], plot: str | None) -> str:
    """One cell's section: heading (anchored from the matrix), source, verdict, numbers,
    the plot (embedded, click to enlarge)."""
    statement = spec.get("statement", entry["claim"])
    numbers = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in entry.items()
        if k not in ("kind", "message")
    )
    note = "<p><b>smoke profile: underpowered</b></p>" if entry["profile"] == "smoke" else ""
    message = f"<p>{html.escape(entry.get('message', ''))}</p>" if entry.get("message") else ""
    block = (
        f'<h3 id="{html.escape(cell_anchor(entry))}">{html.escape(entry["claim"])}: '
        f"{html.escape(statement)}</h3>"
        f"<p>source: {html.escape(spec.get('source', ''))}; verdict: "
        f"<b>{html.escape(entry['verdict'])}</b></p>{note}{message}<table>{numbers}</table>"
    )
    if plot and Path(plot).is_file():
        encoded = base64.b64encode(Path(plot).read_bytes()).decode()
        caption = (
            f"{entry['claim']} on {entry['model']}, {entry['family']}: the curve or map the "
            "statistic is computed from, with its 95% CI or null distribution (click to enlarge)"
        )
        block += (
            f'<figure><a href="data:image/png;base64,{encoded}" target="_blank">'
            f'<img src="data:image/png;base64,{encoded}" style="width:100%;max-width:1100px">'
            f"</a><figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return block


def summary_blocks(ledger: Mapping[str, Any] | None, profile: str, preregistration: str) -> list:
    """The report's head: the scorecard (when ``scorecard.toml`` sits beside the
    pre-registration), the verdict matrix, the profile, how to read a verdict."""
    blocks = []
    mapping = Path(preregistration).with_name("scorecard.toml")
    if ledger is not None and mapping.is_file():
        blocks.append(html_scorecard([ledger], load_mapping(mapping), missing="not in this run"))
    if ledger is not None:
        blocks.append(
            f"<h2>Verdicts (pre-registration version {ledger['preregistration_version']}, "
            f"{html.escape(profile)} profile)</h2>" + html_matrix(ledger)
        )
    text = (
        "smoke profile: underpowered (small stimulus sets); the real result is --profile full"
        if profile == "smoke"
        else "full profile"
    )
    blocks.append(f"<p><b>{html.escape(text)}</b> (sizes: {html.escape(preregistration)})</p>")
    blocks.append(
        "<p>Each claim is one test: passed = supported at the pre-registered threshold, "
        "failed = not supported (a finding), xfailed = inconclusive (a pre-registered minimum "
        "was not met), error = the machinery or data failed. Thresholds: "
        f"{html.escape(preregistration)}.</p>"
    )
    return blocks
