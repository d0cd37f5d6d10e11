"""``listenkit report``: the verdict matrix and the changed verdicts, from ledgers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listenkit.report.cli import main as cli_main
from listenkit.report.ledger_table import (
    compare_ledgers,
    load_ledger,
    markdown_matrix,
    merge_ledgers,
)


def _entry(claim, model, family, verdict, observed=None, **extra):
    return {"kind": "claim", "claim": claim, "model": model, "family": family,
            "verdict": verdict, "observed": observed, "statistic": "P", "threshold": 0.95,
            **extra}  # fmt: skip


OLD = {
    "profile": "full", "underpowered": False, "preregistration_version": 1,
    "claims": [_entry("C1", "whisper-base", "noise", "supported", 0.998),
               _entry("C1", "whisper-base", "voice", "not supported", 0.84)],
}  # fmt: skip
NEW = {
    "profile": "full", "underpowered": False, "preregistration_version": 2,
    "claims": [_entry("C1", "whisper-base", "noise", "supported", 0.97),
               _entry("C1", "whisper-base", "voice", "inconclusive"),
               _entry("C5a", "whisper-base", "noise", "not supported", 0.06, p_holm=0.06,
                      p_raw=0.03)],
}  # fmt: skip


def test_markdown_matrix_has_one_row_per_claim_and_one_column_per_cell():
    text = markdown_matrix(NEW)
    assert "pre-registration version 2" in text
    assert "| claim | whisper-base noise | whisper-base voice |" in text
    assert "| C1 | **supported** (0.97) | inconclusive |" in text
    assert "not supported (Holm p 0.06, raw 0.03)" in text
    assert "- C1: P; threshold 0.95" in text


def test_compare_lists_changed_verdicts_only():
    changed = compare_ledgers(OLD, NEW)
    assert changed == [
        "C1 whisper-base voice: not supported -> inconclusive (observed 0.84 -> n/a)",
        "C5a whisper-base noise: absent -> not supported",
    ]


def test_cli_report(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "verdicts.json").write_text(json.dumps(OLD))
    (tmp_path / "new.json").write_text(json.dumps(NEW))
    assert cli_main(["report", str(tmp_path / "new.json"), "--markdown"]) == 0
    assert "| C1 |" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "old"), str(tmp_path / "new.json"), "--compare"]) == 0
    assert "not supported -> inconclusive" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not a verdict ledger"):
        (tmp_path / "bad.json").write_text("{}")
        load_ledger(tmp_path / "bad.json")


def test_publish_copies_ledger_report_and_evidence_but_no_audio(tmp_path):

    run = tmp_path / "reports"
    (run / "C1" / "whisper-base-noise").mkdir(parents=True)
    (run / ".ledger").mkdir()
    (run / "verdicts.json").write_text(json.dumps(NEW))
    (run / "claims.html").write_text("<html></html>")
    (run / "C1" / "whisper-base-noise" / "evidence.json").write_text("{}")
    (run / "C1" / "whisper-base-noise" / "plot.png").write_bytes(b"png")
    (run / "C1" / "whisper-base-noise" / "audio.npy").write_bytes(b"npy")
    (run / ".ledger" / "x.json").write_text("{}")
    assert cli_main(["report", str(run), "--publish", str(tmp_path / "out")]) == 0
    published = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*")
    )
    assert published == [
        "C1/whisper-base-noise/evidence.json", "C1/whisper-base-noise/plot.png",
        "claims.html", "verdicts.json",
    ]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="not a finished claims run"):
        cli_main(["report", str(tmp_path / "empty"), "--publish", str(tmp_path / "o2")])


def test_html_page_puts_the_matrix_first_and_embeds_every_plot(tmp_path):
    run = tmp_path / "run"
    (run / "C1" / "whisper-base-noise").mkdir(parents=True)
    (run / "verdicts.json").write_text(json.dumps(NEW))
    (run / "C1" / "whisper-base-noise" / "evidence.json").write_text(
        json.dumps({"statement": "A sharp causal peak"})
    )
    (run / "C1" / "whisper-base-noise" / "plot.png").write_bytes(b"\x89PNG fake")
    mapping = Path(__file__).resolve().parent.parent / "claims" / "scorecard.toml"
    assert cli_main(["report", str(run), "--html", "--mapping", str(mapping)]) == 0
    page = (run / "index.html").read_text()
    assert page.index('id="scorecard"') < page.index("verdict-matrix")  # the scorecard first
    assert page.index("verdict-matrix") < page.index('<section id="C1')
    assert "A sharp causal peak" in page and page.count("data:image/png;base64,") == 2
    assert 'id="C1-whisper-base-noise"' in page and 'href="#C1-whisper-base-noise"' in page


def test_several_runs_merge_into_one_matrix(tmp_path, capsys):
    e3 = {"profile": "full", "underpowered": False, "preregistration_version": 2,
          "claims": [_entry("C4", "whisper-base", "asr-noise", "not supported", 0.08)]}  # fmt: skip
    (tmp_path / "e12.json").write_text(json.dumps(NEW))
    (tmp_path / "e3.json").write_text(json.dumps(e3))
    assert cli_main(["report", str(tmp_path / "e12.json"), str(tmp_path / "e3.json"),
                     "--markdown"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "| claim | whisper-base asr-noise | whisper-base noise | whisper-base voice |" in text
    assert "| C4 | not supported (0.08) |  |  |" in text
    assert merge_ledgers([NEW, e3])["claims"][-1]["claim"] == "C4"
    with pytest.raises(ValueError, match="cells in more than one ledger: C1 whisper-base noise"):
        merge_ledgers([NEW, NEW])
    with pytest.raises(ValueError, match="different preregistration_versions"):
        merge_ledgers([OLD, e3])
    (tmp_path / "old.json").write_text(json.dumps(OLD))
    assert cli_main(["report", str(tmp_path / "old.json"), str(tmp_path / "e3.json"),
                     "--markdown"]) == 2  # fmt: skip
    assert "different preregistration_versions" in capsys.readouterr().err


WHATS = [
    (2, 12, "C1 uses ratios of means over the pairs past the floor."),
    (2, 13, "E1 (the listen layer): voices aligned in time, so a pair differs by voice only."),
    (2, 14, "Fresh stimuli for every experiment: a new seed and a new split salt."),
    (2, 15, "C1-sharp is cross-fitted on two halves of the stimuli."),
    (1, 9, "C1 was first registered with a threshold of 0.95 on P_boot."),
]
PREREGISTRATION = {
    "amendments": [{"version": v, "issue": i, "what": w} for v, i, w in WHATS],
    "e1": {"claims": {"C1": {}, "C1-sharp": {}}},
    "e2": {"claims": {"C5a": {}}},
}  # fmt: skip


def test_compare_markdown_gives_both_findings_and_the_amendments_that_name_the_claim():
    from listenkit.report.verdict_changes import amendments_from, markdown_changes

    old = {**OLD, "claims": [*OLD["claims"], _entry("C5a", "whisper-base", "noise", "skipped")]}
    c2 = _entry("C2", "whisper-base", "noise", "supported", 1.0)
    new = {**NEW, "claims": [*NEW["claims"][:2], c2]}
    new["claims"][1] = {**new["claims"][1], "message": "inconclusive: 9 pairs past the floor"}
    amendments, experiment_of = amendments_from(PREREGISTRATION)
    assert experiment_of == {"C1": "E1", "C1-sharp": "E1", "C5a": "E2"}
    assert amendments[3].names == {"C1-sharp"}  # not C1
    text = markdown_changes(old, new, amendments, experiment_of)
    assert "| C1 | whisper-base | noise | supported (0.998) | supported (0.97) |  |" in text
    assert "| C1 | whisper-base | voice | not supported (0.84) | inconclusive | changed |" in text
    assert "Not in the v2 ledgers given: C5a." in text  # a claim only one side ran
    assert "Only in the v2 ledgers given: C2." in text
    assert "| C2 |" not in text
    why = text.split("## Why")[1]
    assert "observed 0.84, threshold 0.95" in why  # a ledger entry without a message
    assert "v2: inconclusive: 9 pairs past the floor" in why
    assert "amendment 1 (v2, issue 12): C1 uses ratios" in why  # names the claim
    assert "amendment 2 (v2, issue 13): E1 (the listen layer)" in why  # names its experiment
    assert "amendment 4" not in why  # names C1-sharp, not C1
    assert "amendment 5" not in why  # version 1: before the old ledger's
    general = why.split("apply to every claim")[1]
    assert "amendment 3 (v2, issue 14): Fresh stimuli" in general


def test_compare_groups_ledgers_by_version(tmp_path, capsys):
    from listenkit.report.verdict_changes import by_version

    half = {**NEW, "claims": NEW["claims"][:1]}
    other = {**NEW, "claims": NEW["claims"][1:]}
    old, new = by_version([half, OLD, other])
    assert old is not None and old["preregistration_version"] == 1
    assert len(new["claims"]) == 3  # v2's two runs merged
    v3 = {**NEW, "preregistration_version": 3}
    with pytest.raises(ValueError, match="exactly two pre-registration versions"):
        by_version([OLD, NEW, v3])
    for name, ledger in (("a", half), ("b", OLD), ("c", other)):
        (tmp_path / f"{name}.json").write_text(json.dumps(ledger))
    (tmp_path / "pre.toml").write_text(
        '[[amendments]]\nversion = 2\nissue = 1\nwhat = "C1 changed."\n'
    )
    args = ["report", *(str(tmp_path / f"{n}.json") for n in "abc"), "--compare"]
    assert cli_main(args) == 0
    assert "C1 whisper-base voice: not supported -> inconclusive" in capsys.readouterr().out
    assert cli_main([*args, "--markdown", "--preregistration", str(tmp_path / "pre.toml")]) == 0
    assert "amendment 1 (v2, issue 1): C1 changed." in capsys.readouterr().out
    assert cli_main([*args, "--markdown", "--preregistration", str(tmp_path / "no.toml")]) == 2
    assert "no pre-registration file" in capsys.readouterr().err
