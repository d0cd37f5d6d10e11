"""Check a claims run: every cell of the pre-registered grid that runs in the ledger's
profile has a verdict, none is an error, the evidence and report files exist, and the
ledger was made under the current pre-registration version. "not supported" and
"inconclusive" are findings, not failures; a model outside [models].required may be
skipped (its weights are not on this machine). With --compare OTHER, also check that the
entries both ledgers share are identical (the same numbers with and without
pytest-xdist).

    python .ci/check_verdicts.py reports [--compare other_reports]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from listenkit.claims import Preregistration
from listenkit.claims.ledger import validate_ledger

PREREGISTRATION = Path(__file__).resolve().parent.parent / "claims" / "preregistration.toml"


def expected_entries(prereg: Preregistration, profile: str) -> list[tuple[str, str, str]]:
    """The claim cells that run in ``profile`` (the grid, from the pre-registration)."""
    return [
        (c.claim, c.model, c.family)
        for c in prereg.cells(kind="claim")
        if prereg.not_in_profile(c, profile) is None
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--compare")
    args = parser.parse_args()
    root = Path(args.root)
    prereg = Preregistration.load(PREREGISTRATION)
    ledger = json.loads((root / "verdicts.json").read_text())
    entries = {(e["claim"], e["model"], e["family"]): e for e in ledger["claims"]}
    required = set(prereg["models"]["required"])
    expected = [
        key
        for key in expected_entries(prereg, ledger["profile"])
        if key[1] in required or entries.get(key, {}).get("verdict") != "skipped"
    ]
    problems = validate_ledger(ledger, expected, root)
    for key in expected:
        entry = entries.get(key)
        if entry and entry["verdict"] == "skipped":
            problems.append(f"{key}: skipped ({entry.get('message', '')})")
    print(f"{len(ledger['claims'])} verdicts ({ledger['profile']} profile):")
    for e in ledger["claims"]:
        print(
            f"  {e['claim']:13s} {e['model']:17s} {e['family']:15s} {e['verdict']:14s} "
            + (
                f"({e.get('message', '')})"
                if e["verdict"] in ("inconclusive", "skipped", "error")
                else f"{e.get('statistic', '')} = {e.get('observed', '')} "
                f"(threshold {e.get('threshold', '')})"
            )
        )
    stale = [e for e in ledger["claims"] if e.get("preregistration_version") != prereg.version]
    if ledger.get("preregistration_version") != prereg.version or stale:
        problems.append(
            f"the ledger was made under pre-registration version "
            f"{ledger.get('preregistration_version')}, the current one is {prereg.version}"
        )
    if args.compare:
        other = json.loads((Path(args.compare) / "verdicts.json").read_text())
        theirs = {(e["claim"], e["model"], e["family"]): e for e in other["claims"]}
        for key in sorted(set(entries) & set(theirs)):
            if entries[key] != theirs[key]:
                problems.append(f"{key}: differs between runs: {entries[key]} vs {theirs[key]}")
        print(f"compared {len(set(entries) & set(theirs))} shared verdicts with {args.compare}")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
