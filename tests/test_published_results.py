"""Published full-profile results (``results/<date>-full/``) are complete and readable
offline (the report embeds its plots, and opens with the scorecard), and the README's
scorecard is generated from them: each claim at the newest pre-registration version
published for it. Older versions' folders stay as history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.stimuli import preregistration

RESULTS = Path(__file__).resolve().parent.parent / "results"
PUBLISHED = sorted(p for p in RESULTS.glob("*-full") if (p / "verdicts.json").is_file())


def test_there_are_published_full_profile_results():
    assert PUBLISHED, f"no results/<date>-full/verdicts.json under {RESULTS}"


def _version(folder: Path) -> int:
    return json.loads((folder / "verdicts.json").read_text())["preregistration_version"]


@pytest.mark.parametrize("folder", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_published_results_are_consistent_and_complete(folder):
    ledger = json.loads((folder / "verdicts.json").read_text())
    version = preregistration()["version"]
    stale = {e["preregistration_version"] for e in ledger["claims"]} - {_version(folder)}
    assert not stale, f"{folder.name} mixes pre-registration versions: {stale}"
    assert _version(folder) <= version, f"{folder.name} is from a future pre-registration"
    assert ledger["profile"] == "full"
    assert (folder / "claims.html").is_file()
    assert "data:image/png;base64," in (folder / "claims.html").read_text()  # plots inside
    for entry in ledger["claims"]:
        if entry["verdict"] in ("supported", "not supported", "inconclusive"):
            evidence = folder / entry["claim"] / f"{entry['model']}-{entry['family']}"
            assert (evidence / "evidence.json").is_file(), evidence
    assert not list(folder.rglob("*.npy")), "no stimulus audio in published results"


def test_the_readme_scorecard_is_the_published_ledgers():
    """The README's scorecard is generated from every published ledger (each claim at
    the newest pre-registration version published for it, the version in its row),
    never typed: it equals ``listenkit report results/*-full --scorecard``."""
    from listenkit.report.ledger_table import load_ledger
    from listenkit.report.scorecard import load_mapping, markdown_scorecard

    readme = (RESULTS.parent / "README.md").read_text()
    start, end = "<!-- scorecard:generated -->\n", "<!-- scorecard:end -->"
    assert start in readme and end in readme, "the README has lost its generated scorecard"
    block = readme.split(start, 1)[1].split(end, 1)[0]
    mapping = load_mapping(RESULTS.parent / "claims" / "scorecard.toml")
    expected = markdown_scorecard([load_ledger(p) for p in PUBLISHED], mapping)
    assert block.strip() == expected.strip(), (
        "the README's scorecard differs from the published ledgers: run "
        "`listenkit report results/*-full --scorecard --into README.md`"
    )


def test_the_scorecard_covers_every_preregistered_claim():
    from listenkit.report.scorecard import load_mapping

    mapping = load_mapping(RESULTS.parent / "claims" / "scorecard.toml")
    prereg = preregistration()
    claims = {c for e in ("e1", "e2", "e3", "e4") for c in prereg[e]["claims"]}
    assert claims == {row["id"] for row in mapping["claim"]}


@pytest.mark.parametrize("folder", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_the_published_index_opens_with_the_scorecard(folder):
    page = (folder / "index.html").read_text()
    assert '<section id="scorecard">' in page
    assert page.index('<section id="scorecard">') < page.index("<h3>")  # before every cell


def test_the_v3_against_v2_table_is_the_published_ledgers():
    """results/README.md's v2 -> v3 comparison is generated (``listenkit report
    results/*-full --compare --markdown``), never typed."""
    import tomllib

    from listenkit.report.ledger_table import load_ledger
    from listenkit.report.verdict_changes import amendments_from, by_version, markdown_changes

    page = (RESULTS / "README.md").read_text()
    start, end = "<!-- v3-vs-v2:generated -->\n", "<!-- v3-vs-v2:end -->"
    assert start in page and end in page, "results/README.md has lost its v3-vs-v2 section"
    block = page.split(start, 1)[1].split(end, 1)[0]
    prereg = tomllib.loads((RESULTS.parent / "claims" / "preregistration.toml").read_text())
    old, new = by_version([load_ledger(p) for p in PUBLISHED])
    assert block == markdown_changes(old, new, *amendments_from(prereg)), (
        "results/README.md's v3-vs-v2 section differs from the published ledgers: run "
        "`listenkit report results/*-full --compare --markdown --into results/README.md`"
    )


def test_the_v3_compute_times_are_the_published_evidence():
    """results/README.md's v3 compute times are generated (``listenkit report
    results/*-v3-*-full --times``), never typed."""
    import tomllib

    from listenkit.report.compute_times import cell_times, markdown_times
    from listenkit.report.verdict_changes import amendments_from

    page = (RESULTS / "README.md").read_text()
    start, end = "<!-- times:generated -->\n", "<!-- times:end -->"
    assert start in page and end in page, "results/README.md has lost its compute times"
    block = page.split(start, 1)[1].split(end, 1)[0]
    prereg = tomllib.loads((RESULTS.parent / "claims" / "preregistration.toml").read_text())
    v3 = sorted(p for p in PUBLISHED if "-v3-" in p.name)
    assert block == markdown_times(cell_times(v3, amendments_from(prereg)[1])), (
        "results/README.md's compute times differ from the published evidence: run "
        "`listenkit report results/*-v3-*-full --times --into results/README.md`"
    )
