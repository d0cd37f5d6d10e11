"""E4's plots are drawn from the evidence alone, so a finished run can be redrawn."""

from __future__ import annotations

import json

import pytest

from listenkit.report.cli import main as cli_main
from listenkit.report.head_plots import plot_head_claim

SETS = {"null": [0.1, 0.2, 0.5], "observed": 0.9, "p_value": 0.25, "R": 3,
        "statistic": "ratio-of-means recovery of the set"}  # fmt: skip
EVIDENCE = {
    "top_heads_half_a": [[1, 0], [2, 1]],
    "encoder_effects_half_a": [[0.5, 0.0, -0.1], [0.2, 0.4, 0.0]],
    "recovery": SETS,
    "knockout": SETS | {"statistic": "mean drop (nats)"},
    "L_star_half_a": 2, "top_at_L_star": 1, "p_value": 0.6,
    "decoder_effects_half_a": [[0.1, 0.3], [0.2, 0.0]],
    "alignment_heads": [[2, 0]], "top_decoder_heads_half_a": [[1, 1]], "overlap": [],
}  # fmt: skip


def test_redraw_draws_every_e4_cell_from_its_evidence(tmp_path, capsys):
    for claim in ("C6-sufficient", "C6-necessary", "C6-at-peak", "C6-alignment"):
        cell = tmp_path / claim / "whisper-tiny.en-noise"
        cell.mkdir(parents=True)
        (cell / "evidence.json").write_text(json.dumps(EVIDENCE))
    skipped = tmp_path / "C6-at-peak" / "whisper-base-noise"
    skipped.mkdir()
    (skipped / "evidence.json").write_text(json.dumps({"reason": "halves too small"}))
    assert cli_main(["report", str(tmp_path), "--redraw"]) == 0
    assert "redrew 4 plots" in capsys.readouterr().out
    plots = sorted(tmp_path.rglob("plot.png"))
    assert len(plots) == 4 and all(p.read_bytes().startswith(b"\x89PNG") for p in plots)
    assert not (skipped / "plot.png").exists()


def test_an_unknown_claim_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not an E4 claim"):
        plot_head_claim(tmp_path / "p.png", "C1", "cell", EVIDENCE)
