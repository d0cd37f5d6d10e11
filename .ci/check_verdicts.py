"""Check a claims run: every pre-registered (claim, model, family) has a verdict, none is
an error, the evidence and report files exist, and the ledger was made under the current
pre-registration version. "not supported" and "inconclusive" are findings, not failures.
With --compare OTHER, also check that the entries both ledgers share are identical (the
same numbers with and without pytest-xdist). Holm-adjusted fields depend on which cells
ran; when the two runs' Holm families differ in size, only the raw p-values and the
tests' own verdicts are compared.

    python .ci/check_verdicts.py reports [--compare other_reports]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from listenkit.report.evidence import validate_ledger

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def expected_entries(
    prereg: dict, models: list[str], profile: str = "smoke"
) -> list[tuple[str, str, str]]:
    out = []
    for claim_id, claim in prereg["claims"].items():
        for model in claim.get("models", prereg["common"]["models"]):
            if model not in models:
                continue
            for family in prereg["common"]["families"]:
                out.append((claim_id, model, family))
    e2 = prereg["e2"]
    for claim_id in e2["claims"]:
        for model in [*e2["models"], *e2.get("optional_models", [])]:
            if model not in models:
                continue
            for family in e2["families"]:
                out.append((claim_id, model, family))
    e4 = prereg["e4"]
    for claim_id in e4["claims"]:
        for model in e4["models"][profile]:
            if model in models:
                out.append((claim_id, model, e4["family"]))
    e3 = prereg.get("e3")
    for claim_id in e3["claims"] if e3 else ():
        for model in e3["models"][profile]:
            if model in models:
                out.extend((claim_id, model, family) for family in e3["families"])
    return out


def required_models(prereg: dict) -> set[str]:
    """Models whose verdicts may not be skipped (the others need weights we lack)."""
    return {*prereg["common"]["models"], *prereg["e2"]["models"]}


HOLM_FIELDS = ("p_holm", "holm_cells", "observed", "verdict")


def comparable(a: dict, b: dict) -> tuple[dict, dict]:
    """The parts of two entries that must agree: all of them, except the Holm-adjusted
    fields when the Holm families have different sizes (then the raw p and the tests'
    own verdicts must agree)."""
    if a.get("holm_cells") != b.get("holm_cells"):
        a = {k: v for k, v in a.items() if k not in HOLM_FIELDS}
        b = {k: v for k, v in b.items() if k not in HOLM_FIELDS}
    return a, b


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--compare")
    args = parser.parse_args()
    root = Path(args.root)
    prereg = tomllib.loads(
        (Path(__file__).resolve().parent.parent / "claims" / "preregistration.toml").read_text()
    )
    ledger = json.loads((root / "verdicts.json").read_text())
    entries = {(e["claim"], e["model"], e["family"]): e for e in ledger["claims"]}
    # optional models (weights not on this machine) may be skipped, with a reason
    expected = [
        key
        for key in expected_entries(
            prereg,
            profile=ledger["profile"],
            models=[
                "whisper-tiny.en",
                "whisper-base",
                "whisper-small",
                "whisper-large-v2",
                *prereg["e2"].get("optional_models", []),
            ],
        )
        if not (
            key[1] not in required_models(prereg)
            and entries.get(key, {}).get("verdict") == "skipped"
        )
    ]
    problems = validate_ledger(ledger, expected, root)
    for key in expected:
        entry = entries.get(key)
        if entry and entry["verdict"] == "skipped":
            problems.append(f"{key}: skipped ({entry.get('message', '')})")
    print(f"{len(ledger['claims'])} verdicts ({ledger['profile']} profile):")
    for e in ledger["claims"]:
        print(
            f"  {e['claim']:9s} {e['model']:17s} {e['family']:15s} {e['verdict']:14s} "
            + (
                f"({e.get('message', '')})"
                if e["verdict"] in ("inconclusive", "skipped", "error")
                else f"{e.get('statistic', '')} = {e.get('observed', '')} "
                f"(threshold {e.get('threshold', '')})"
            )
        )
    version = prereg["version"]
    stale = [e for e in ledger["claims"] if e.get("preregistration_version") != version]
    if ledger.get("preregistration_version") != version or stale:
        problems.append(
            f"the ledger was made under pre-registration version "
            f"{ledger.get('preregistration_version')}, the current one is {version}"
        )
    if args.compare:
        other = json.loads((Path(args.compare) / "verdicts.json").read_text())
        theirs = {(e["claim"], e["model"], e["family"]): e for e in other["claims"]}
        for key in sorted(set(entries) & set(theirs)):
            mine, their = comparable(entries[key], theirs[key])
            if mine != their:
                problems.append(f"{key}: differs between runs: {mine} vs {their}")
        print(f"compared {len(set(entries) & set(theirs))} shared verdicts with {args.compare}")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
