"""Published full-profile results (``results/<date>-full/``) are complete and readable
offline (the report embeds its plots), and the README shows the newest ones: its table
is the merged ledgers of the newest pre-registration version that has published results;
while the current version has none yet, the README says that its results are pending.
Older versions' folders stay as history."""

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


def newest_published() -> list[Path]:
    """The published folders of the newest pre-registration version among them."""
    newest = max(_version(p) for p in PUBLISHED)
    return [p for p in PUBLISHED if _version(p) == newest]


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


def test_the_readme_verdict_table_is_the_published_ledgers():
    """The README's verdict table is generated from the newest published ledgers, never
    typed: it equals ``listenkit report <those folders> --markdown`` (merged); when they
    are older than the current pre-registration, the README says the current version's
    results are pending."""
    from listenkit.report.ledger_table import load_ledger, markdown_matrix, merge_ledgers

    readme = (RESULTS.parent / "README.md").read_text()
    start, end = "<!-- verdicts:generated -->\n", "<!-- verdicts:end -->"
    assert start in readme and end in readme, "the README has lost its generated verdict table"
    block = readme.split(start, 1)[1].split(end, 1)[0]
    expected = markdown_matrix(merge_ledgers([load_ledger(p) for p in newest_published()]))
    current, shown = preregistration()["version"], _version(newest_published()[0])
    if shown < current:
        assert f"Version {current} results are pending" in readme, (
            f"the README shows version {shown} results while the pre-registration is at "
            f"version {current}: say 'Version {current} results are pending' next to the table"
        )
    assert block.strip() == expected.strip(), (
        "the README's verdict table differs from the published ledgers: paste the output "
        "of `listenkit report results/*-full --markdown` between its markers"
    )
