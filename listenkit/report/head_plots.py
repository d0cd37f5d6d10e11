"""E4's plots, drawn from a claim cell's evidence alone, so a finished (or published) run
can be redrawn without recomputing: ``listenkit report RUN --redraw``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from listenkit.report.plots import plot_heads

__all__ = ["HEAD_CLAIMS", "plot_head_claim", "redraw_head_plots"]

HEAD_CLAIMS = ("C6-sufficient", "C6-necessary", "C6-at-peak", "C6-alignment")
_SET_RESULT = {"C6-sufficient": "recovery", "C6-necessary": "knockout"}


def _heads(heads) -> list[tuple[int, int]]:
    return [(int(layer), int(head)) for layer, head in heads]


def plot_head_claim(
    path: str | Path, claim_id: str, cell: str, evidence: Mapping[str, Any]
) -> Path:
    """The heatmap of single-head effects on half A (x = the chosen heads) and, for the
    random-set claims, the distribution of the R random sets with the top-5's value."""
    top = _heads(evidence["top_heads_half_a"])
    encoder = np.asarray(evidence["encoder_effects_half_a"], dtype=float)
    if claim_id in _SET_RESULT:
        result = evidence[_SET_RESULT[claim_id]]
        return plot_heads(
            path, encoder, marked=top, null=np.asarray(result["null"]),
            observed=result["observed"], statistic=f"{result['statistic']} (half B)",
            title=f"{claim_id} {cell}: encoder heads on half A (x = top-5); rank p on half B "
            f"= {result['p_value']:.3f}",
        )  # fmt: skip
    if claim_id == "C6-at-peak":
        l_star = evidence.get("L_star_half_b", evidence.get("L_star_half_a"))
        return plot_heads(
            path, encoder, marked=top,
            outlined=[(l_star, h) for h in range(encoder.shape[1])],
            title=f"{claim_id} {cell}: {evidence['top_at_L_star']} of the top-5 (x) at L* = "
            f"{l_star} (outlined); hypergeometric p = {evidence['p_value']:.3f}",
        )  # fmt: skip
    if claim_id == "C6-alignment":
        k = len(evidence["alignment_heads"])
        return plot_heads(
            path, np.asarray(evidence["decoder_effects_half_a"], dtype=float),
            marked=_heads(evidence["top_decoder_heads_half_a"]),
            outlined=_heads(evidence["alignment_heads"]),
            title=f"{claim_id} {cell}: decoder cross-attention heads on half A (x = top-{k}, "
            f"squares = OpenAI's alignment heads); overlap {len(evidence['overlap'])}, "
            f"p = {evidence['p_value']:.3f}",
        )  # fmt: skip
    raise ValueError(f"{claim_id!r} is not an E4 claim; use one of {', '.join(HEAD_CLAIMS)}")


def redraw_head_plots(run: str | Path) -> list[Path]:
    """Redraw ``plot.png`` of every E4 cell in a run folder from its ``evidence.json``."""
    drawn = []
    for claim_id in HEAD_CLAIMS:
        for evidence_path in sorted(Path(run).glob(f"{claim_id}/*/evidence.json")):
            evidence = json.loads(evidence_path.read_text())
            if evidence.get("reason"):  # inconclusive: no statistic to draw
                continue
            cell = evidence_path.parent.name
            drawn.append(
                plot_head_claim(evidence_path.parent / "plot.png", claim_id, cell, evidence)
            )
    return drawn
