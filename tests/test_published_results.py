"""Published full-profile results (``results/<date>-full/``) are current: made under the
pre-registration version in ``claims/preregistration.toml``, complete, and readable
offline (the report embeds its plots). Stale results fail here instead of being shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.stimuli import preregistration

RESULTS = Path(__file__).resolve().parent.parent / "results"
PUBLISHED = sorted(p for p in RESULTS.glob("*-full") if (p / "verdicts.json").is_file())


def test_there_are_published_full_profile_results():
    assert PUBLISHED, f"no results/<date>-full/verdicts.json under {RESULTS}"


@pytest.mark.parametrize("folder", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_published_results_are_current_and_complete(folder):
    ledger = json.loads((folder / "verdicts.json").read_text())
    version = preregistration()["version"]
    stale = {e["preregistration_version"] for e in ledger["claims"]} - {version}
    assert ledger["preregistration_version"] == version and not stale, (
        f"{folder.name} was made under pre-registration version "
        f"{ledger['preregistration_version']} (entries: {stale or 'same'}), the current one "
        f"is {version}: rerun `pytest claims/ --profile full -n 2` and publish it"
    )
    assert ledger["profile"] == "full"
    assert (folder / "claims.html").is_file()
    assert "data:image/png;base64," in (folder / "claims.html").read_text()  # plots inside
    for entry in ledger["claims"]:
        if entry["verdict"] in ("supported", "not supported", "inconclusive"):
            evidence = folder / entry["claim"] / f"{entry['model']}-{entry['family']}"
            assert (evidence / "evidence.json").is_file(), evidence
    assert not list(folder.rglob("*.npy")), "no stimulus audio in published results"


def test_the_readme_verdict_table_is_the_published_ledgers():
    """The README's verdict table is generated from the published ledgers, never typed:
    it equals ``listenkit report results/*-full --markdown`` (all of them, merged)."""
    from listenkit.report.ledger_table import load_ledger, markdown_matrix, merge_ledgers

    readme = (RESULTS.parent / "README.md").read_text()
    start, end = "<!-- verdicts:generated -->\n", "<!-- verdicts:end -->"
    assert start in readme and end in readme, "the README has lost its generated verdict table"
    block = readme.split(start, 1)[1].split(end, 1)[0]
    expected = markdown_matrix(merge_ledgers([load_ledger(p) for p in PUBLISHED]))
    assert block.strip() == expected.strip(), (
        "the README's verdict table differs from the published ledgers: paste the output "
        "of `listenkit report results/*-full --markdown` between its markers"
    )
