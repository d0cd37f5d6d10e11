"""The claims plugin end to end on a small claims folder (pytester, in-process): cells
from the pre-registration's grid, verdicts from outcomes, ``require`` as an inconclusive
xfail with its reason, Holm across a p-value claim's cells (the test's outcome *is* the
adjusted verdict, with and without xdist), skips, and provenance in the evidence."""

from __future__ import annotations

import json

import pytest

PREREGISTRATION = """
version = 7

[split]
salt = "s"

[multiplicity]
method = "holm"
alpha = 0.05

[models]
required = ["m1", "m2"]

[families.f]
description = "a family"

[ex]
models = ["m1", "m2"]
families = ["f"]
seed = 1
resamples = { smoke = 10, full = 100 }
minimums = { n_used = 8 }

[ex.claims.C-value]
statement = "The value is above 0"
source = "a test"
statistic = "value"
threshold = 0.0
rule = ">"

[ex.claims.C-p]
statement = "The effect is significant"
source = "a test"
statistic = "p"
threshold = 0.05
rule = "<"
multiplicity = "holm"
models = ["m1", "m2", "m3"]

[ex.claims.C-min]
statement = "Needs eight pairs"
source = "a test"
statistic = "value"
threshold = 0.0
rule = ">="
"""

CONFTEST = """
import pytest

DATA = {"m1": {"value": 0.5, "p": 0.03, "n": 16}, "m2": {"value": -0.5, "p": 0.04, "n": 3}}


def pytest_listenkit_analysis(cell):
    if cell.model not in DATA:
        pytest.skip(f"{cell.model}: weights not supplied")
    return DATA[cell.model]
"""

CLAIMS = """
import pytest

from listenkit.experiments import Measured


@pytest.mark.claim("C-value")
def test_value(cell):
    cell.judge(Measured(observed=cell.analysis["value"], numbers={"extra": 1},
                        why_not=lambda t: f"value {cell.analysis['value']} <= {t}"))


@pytest.mark.claim("C-p")
def test_p(cell):
    cell.judge(Measured(observed=cell.analysis["p"], why_not=lambda t: "not significant"))


@pytest.mark.claim("C-min")
def test_minimum(cell):
    n = cell.analysis["n"]
    measured = Measured(observed=1.0, numbers={"measured_value": 1.0},
                        details={"curve": [1, 2]}, why_not=lambda t: f"value 1.0 vs {t}")
    cell.require(n >= cell.minimum("n_used"), f"{n} pairs; the minimum is 8", n_used=n,
                 measured=measured)
    cell.judge(measured)
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", **{"claims/preregistration": PREREGISTRATION})
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**{"claims/test_claims": CLAIMS})
    return pytester


def _outcomes(reprec) -> dict[str, str]:
    outcomes = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        if report.when == "call" or (report.when == "setup" and not report.passed):
            name = report.nodeid.split("::")[-1]
            outcomes[name] = "xfailed" if hasattr(report, "wasxfail") else report.outcome
    return outcomes


def test_verdicts_are_the_test_outcomes(suite: pytest.Pytester):
    reprec = suite.inline_run(
        "claims", "--listenkit-evidence-dir", "evidence", "-p", "no:cacheprovider"
    )
    ledger = json.loads((suite.path / "evidence" / "verdicts.json").read_text())
    assert ledger["preregistration_version"] == 7
    verdicts = {f"{e['claim']}[{e['model']}-{e['family']}]": e for e in ledger["claims"]}
    expected = {
        "C-value[m1-f]": ("supported", "passed"),
        "C-value[m2-f]": ("not supported", "failed"),
        # raw .03, .04 and m3 (skipped: counts as p = 1, the grid is fixed): Holm .09, .09
        "C-p[m1-f]": ("not supported", "failed"),
        "C-p[m2-f]": ("not supported", "failed"),
        "C-p[m3-f]": ("skipped", "skipped"),
        "C-min[m1-f]": ("supported", "passed"),
        "C-min[m2-f]": ("inconclusive", "xfailed"),
    }
    tests = {"C-value": "test_value", "C-p": "test_p", "C-min": "test_minimum"}
    outcomes = _outcomes(reprec)
    for cell, (verdict, outcome) in expected.items():
        claim, params = cell.split("[")
        assert verdicts[cell]["verdict"] == verdict, cell
        assert outcomes[f"{tests[claim]}[{params}"] == outcome, cell
    holm = verdicts["C-p[m1-f]"]
    assert holm["p_raw"] == 0.03 and holm["p_holm"] == pytest.approx(0.09)
    assert holm["holm_cells"] == 3 and holm["verdict_before_holm"] == "supported"
    assert "Holm p = 0.090 over 3 cells" in holm["message"]
    assert verdicts["C-value[m2-f]"]["message"].endswith("value -0.5 <= 0.0")
    assert verdicts["C-value[m1-f]"]["extra"] == 1
    assert "minimum is 8" in verdicts["C-min[m2-f]"]["message"]
    # an inconclusive cell still reports what was measured, without a verdict on it
    assert "(measured, not judged: value 1.0 vs 0.0)" in verdicts["C-min[m2-f]"]["message"]
    assert verdicts["C-min[m2-f]"]["measured_value"] == 1.0
    assert "observed" not in verdicts["C-min[m2-f]"]
    inconclusive = json.loads((suite.path / "evidence/C-min/m2-f/evidence.json").read_text())
    assert inconclusive["curve"] == [1, 2] and "minimum is 8" in inconclusive["reason"]
    assert "weights not supplied" in verdicts["C-p[m3-f]"]["message"]
    evidence = json.loads((suite.path / "evidence/C-value/m1-f/evidence.json").read_text())
    for key in ("statement", "source", "preregistration_sha256", "listenkit_commit",
                "code_sha256", "versions", "seed"):  # fmt: skip
        assert key in evidence, key
    assert (suite.path / "evidence/C-min/m2-f/evidence.json").is_file()  # inconclusive too


@pytest.mark.slow
def test_holm_families_are_the_same_under_xdist(suite: pytest.Pytester):
    """Cells of one Holm family judged in different workers see the same family."""
    result = suite.runpytest(
        "claims", "-n", "2", "--listenkit-evidence-dir", "ev", "-p", "no:cacheprovider"
    )
    result.stdout.fnmatch_lines(["*supported 2 / not supported 3 / inconclusive 1*"])
    ledger = json.loads((suite.path / "ev" / "verdicts.json").read_text())
    holm = [e for e in ledger["claims"] if e["claim"] == "C-p" and e["verdict"] != "skipped"]
    assert [e["p_holm"] for e in holm] == [pytest.approx(0.09)] * 2


def test_models_option_deselects_but_the_holm_family_stays_the_grid(suite: pytest.Pytester):
    """v3: the family is the claim's pre-registered grid; m2 and m3 do not run, so they
    count as p = 1 (a run cannot shrink its own multiplicity correction)."""
    suite.inline_run(
        "claims",
        "--listenkit-models",
        "m1",
        "--listenkit-evidence-dir",
        "ev",
        "-p",
        "no:cacheprovider",
    )
    ledger = json.loads((suite.path / "ev" / "verdicts.json").read_text())
    assert {e["model"] for e in ledger["claims"]} == {"m1"}
    holm = next(e for e in ledger["claims"] if e["claim"] == "C-p")
    assert holm["holm_cells"] == 3 and holm["p_holm"] == pytest.approx(0.09)
    assert holm["verdict"] == "not supported"


def test_the_plugin_stays_out_of_other_runs(pytester: pytest.Pytester):
    pytester.makepyfile(test_plain="def test_x():\n    assert True\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "listenkit verdicts" not in result.stdout.str()


def test_the_holm_family_is_the_grid_and_a_broken_sibling_counts_as_p_1(suite):
    """-k does not narrow the family; a sibling whose analysis breaks is an error on its
    own and counts as p = 1 in the others' family."""
    options = ("--listenkit-evidence-dir", "k", "-p", "no:cacheprovider")
    suite.inline_run("claims", "-k", "m1", *options)
    ledger = json.loads((suite.path / "k" / "verdicts.json").read_text())
    holm = next(e for e in ledger["claims"] if e["claim"] == "C-p")
    assert holm["holm_cells"] == 3 and holm["p_holm"] == pytest.approx(0.09)
    suite.makeconftest(CONFTEST.replace('DATA = {"m1"', 'DATA = {"m3": None, "m1"'))
    suite.inline_run("claims", "--listenkit-evidence-dir", "b", "-p", "no:cacheprovider")
    ledger = json.loads((suite.path / "b" / "verdicts.json").read_text())
    cells = {e["model"]: e for e in ledger["claims"] if e["claim"] == "C-p"}
    assert cells["m3"]["verdict"] == "error"
    assert cells["m1"]["verdict"] == "not supported" and cells["m1"]["holm_cells"] == 3
    evidence = json.loads((suite.path / "b/C-p/m1-f/evidence.json").read_text())
    assert evidence["holm_family"] == {"m1-f": 0.03, "m2-f": 0.04, "m3-f": 1.0}
    assert "m3-f" in evidence["holm_probe_errors"]


def test_a_p_value_claim_takes_only_the_cell(suite):
    extra = CLAIMS.replace("def test_p(cell):", "def test_p(cell, tmp_path):")
    suite.makepyfile(**{"claims/test_claims": extra})
    result = suite.runpytest("claims", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*takes only the cell fixture*tmp_path*"])


def test_autouse_fixtures_do_not_count_as_a_p_value_claims_arguments(suite):
    suite.makeconftest(CONFTEST + "\n\n@pytest.fixture(autouse=True)\ndef seeded():\n    pass\n")
    reprec = suite.inline_run("claims", "--listenkit-evidence-dir", "a", "-p", "no:cacheprovider")
    assert _outcomes(reprec)["test_p[m1-f]"] == "failed"  # judged (Holm), not a usage error


def test_a_claims_further_conditions_are_pre_registered_and_required(suite):
    """``also`` in the pre-registration names conditions a statistic must report
    (``Measured.conditions``): supported needs the rule and every condition; a statistic
    whose conditions differ from the pre-registered ones is an error, not a verdict."""
    prereg = PREREGISTRATION.replace(
        'statistic = "value"\nthreshold = 0.0\nrule = ">"',
        'statistic = "value"\nalso = ["margin > 0"]\nthreshold = 0.0\nrule = ">"',
    )
    suite.makefile(".toml", **{"claims/preregistration": prereg})
    claims = CLAIMS.replace(
        'numbers={"extra": 1},',
        'numbers={"extra": 1}, conditions={"margin > 0": cell.model != "m1"},',
    )
    suite.makepyfile(**{"claims/test_claims": claims})
    suite.inline_run("claims", "--listenkit-evidence-dir", "c", "-p", "no:cacheprovider")
    ledger = json.loads((suite.path / "c" / "verdicts.json").read_text())
    cells = {e["model"]: e for e in ledger["claims"] if e["claim"] == "C-value"}
    assert cells["m1"]["verdict"] == "not supported"  # value .5 > 0, but the margin fails
    assert "condition not met: margin > 0" in cells["m1"]["message"]
    suite.makepyfile(**{"claims/test_claims": CLAIMS})  # conditions not reported
    suite.inline_run("claims", "--listenkit-evidence-dir", "d", "-p", "no:cacheprovider")
    ledger = json.loads((suite.path / "d" / "verdicts.json").read_text())
    cells = {e["model"]: e for e in ledger["claims"] if e["claim"] == "C-value"}
    assert cells["m1"]["verdict"] == "error"
