"""The scorecard: one row per claim of the paper, generated from ledgers, never typed."""

from __future__ import annotations

import json

import pytest

from listenkit.report.cli import main as cli_main
from listenkit.report.scorecard import html_scorecard, load_mapping, markdown_scorecard, rows

MAPPING = {
    "title": "t",
    "not_run": "whisper-small: not run here.",
    "claim": [
        {"id": "C1", "section": "Phase 1", "words": "Sharp <peak>", "predicts": "L* mid"},
        {"id": "C9", "section": "X", "words": "never run", "predicts": "-"},
    ],
}


def _entry(claim, model, family, verdict, version, **more):
    return {"claim": claim, "model": model, "family": family, "verdict": verdict,
            "preregistration_version": version} | more  # fmt: skip


LEDGERS = [
    {"profile": "full", "preregistration_version": 2, "claims": [
        _entry("C1", "whisper-base", "noise", "supported", 2, observed=1.0),
        _entry("C1", "whisper-small", "noise", "skipped", 2),
    ]},
    {"profile": "full", "preregistration_version": 3, "claims": [
        _entry("C1", "whisper-base", "noise", "not supported", 3, observed=0.2),
        _entry("C1", "whisper-tiny.en", "noise", "inconclusive", 3),
    ]},
]  # fmt: skip


def test_each_claim_shows_its_newest_published_version_and_no_skipped_model():
    c1, c9 = rows(LEDGERS, MAPPING)
    assert c1.version == 3
    assert c1.cells == {"whisper-base": [("noise", "not supported", "0.2")],
                        "whisper-tiny.en": [("noise", "inconclusive", "")]}  # fmt: skip
    assert c1.finding() == "not supported in 1 of 2, inconclusive in 1 of 2"
    assert c9.version is None and c9.finding() == "no published verdict yet"
    text = markdown_scorecard(LEDGERS, MAPPING)
    assert "whisper-small |" not in text and "whisper-small: not run here." in text
    assert '| C1 (v3) | "Sharp <peak>" (Phase 1) | L* mid | ✗ noise (0.2) | ? noise |' in text
    assert "Sharp &lt;peak&gt;" in html_scorecard(LEDGERS, MAPPING)


def test_the_cli_prints_the_scorecard(tmp_path, capsys):
    for i, ledger in enumerate(LEDGERS):
        (tmp_path / f"l{i}.json").write_text(json.dumps(ledger))
    mapping = tmp_path / "scorecard.toml"
    mapping.write_text('not_run = "n"\n[[claim]]\nid = "C1"\nsection = "s"\nwords = "w"\n'
                       'predicts = "p"\n')  # fmt: skip
    args = [str(tmp_path / "l0.json"), str(tmp_path / "l1.json"), "--scorecard"]
    assert cli_main(["report", *args, "--mapping", str(mapping)]) == 0
    assert "| C1 (v3) |" in capsys.readouterr().out
    mapping.write_text('[[claim]]\nid = "C1"\n')
    with pytest.raises(ValueError, match="lacks"):
        load_mapping(mapping)
