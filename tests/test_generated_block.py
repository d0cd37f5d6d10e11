"""``listenkit report ... --into FILE``: generated output written between a page's markers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from listenkit.report.cli import main as cli_main
from listenkit.report.generated_block import paste

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_paste_replaces_only_the_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- times:generated -->\nold\n<!-- times:end -->\noutro\n")
    assert paste(page, "times", "new\n") is True
    assert page.read_text() == "intro\n<!-- times:generated -->\nnew\n<!-- times:end -->\noutro\n"
    assert paste(page, "times", "new\n") is False
    with pytest.raises(ValueError, match="no single block <!-- scorecard:generated -->"):
        paste(page, "scorecard", "x")


def test_the_scorecard_goes_into_a_copy_of_the_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    shutil.copy(RESULTS.parent / "README.md", readme)
    text = readme.read_text()
    start = text.index("<!-- scorecard:generated -->\n") + len("<!-- scorecard:generated -->\n")
    readme.write_text(text[:start] + "typed by hand\n" + text[text.index("<!-- scorecard:end") :])
    ledgers = [str(p) for p in sorted(RESULTS.glob("*-full")) if (p / "verdicts.json").is_file()]
    assert cli_main(["report", *ledgers, "--scorecard", "--into", str(readme)]) == 0
    assert "block scorecard rewritten" in capsys.readouterr().out
    assert readme.read_text() == (RESULTS.parent / "README.md").read_text()


def test_into_needs_a_block_output(tmp_path, capsys):
    ledger = str(sorted(RESULTS.glob("*-full"))[0])
    assert cli_main(["report", ledger, "--into", str(tmp_path / "x.md")]) == 2
    assert "--into needs --scorecard" in capsys.readouterr().err
