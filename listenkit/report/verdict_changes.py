"""Two pre-registration versions' verdicts side by side, and why each change happened.

``listenkit report OLD... NEW... --compare --markdown`` groups the ledgers by their
pre-registration version (several ledgers of one version, e.g. one published run per
experiment, are merged), keeps the claims that both versions ran, and prints:

- one row per (claim, model, family): the old and the new verdict with their observed
  statistics;
- for every changed cell, both ledgers' findings (their messages) and the amendments
  of the newer versions that name the claim or its experiment (``E2`` names C3, C3-sharp,
  C5a, C5b: the ``[eN].claims`` of the pre-registration); amendments that name no claim
  and no experiment are listed once, as applying to every claim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from listenkit.report.ledger_table import _cell, _number, merge_ledgers

__all__ = ["Amendment", "amendments_from", "by_version", "markdown_changes"]

_NAMED = re.compile(r"(?<![\w-])(C\d[\w-]*[A-Za-z0-9]|C\d|E\d)(?![\w])")


@dataclass(frozen=True)
class Amendment:
    """One entry of the pre-registration's ``[[amendments]]``: ``number`` counts from 1
    in file order; ``names`` are the claims and experiments its ``what`` names."""

    number: int
    version: int
    issue: int | None
    what: str
    names: frozenset[str]

    @property
    def headline(self) -> str:
        """``what`` up to its first sentence end after 40 characters (at most 200)."""
        end = re.search(r"(?<=\.)\s", self.what[40:])
        first = self.what if end is None else self.what[: 40 + end.start()]
        return first if len(first) <= 200 else first[:197] + "..."


def amendments_from(preregistration: Mapping[str, Any]) -> tuple[list[Amendment], dict[str, str]]:
    """The amendments of a loaded pre-registration, and each claim's experiment
    (``{"C3": "E2", ...}`` from the ``[eN].claims`` tables)."""
    experiment_of = {
        claim: section.upper()
        for section in ("e1", "e2", "e3", "e4", "e5")
        for claim in preregistration.get(section, {}).get("claims", {})
    }
    out = [
        Amendment(
            number=i,
            version=int(a.get("version", 0)),
            issue=a.get("issue"),
            what=str(a.get("what", "")),
            names=frozenset(_NAMED.findall(str(a.get("what", "")))),
        )
        for i, a in enumerate(preregistration.get("amendments", []), start=1)
    ]
    return out, experiment_of


def by_version(ledgers: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(older, newer): the ledgers of each of exactly two pre-registration versions,
    merged. Two ledgers of one version are taken in the order given (OLD, NEW)."""
    versions = sorted({ledger.get("preregistration_version") or 0 for ledger in ledgers})
    if len(ledgers) == 2 and len(versions) == 1:
        return dict(ledgers[0]), dict(ledgers[1])
    if len(versions) != 2:
        raise ValueError(
            "--compare needs the ledgers of exactly two pre-registration versions (or two "
            f"ledgers, OLD NEW); got versions {versions}"
        )
    groups = [
        [ledger for ledger in ledgers if (ledger.get("preregistration_version") or 0) == v]
        for v in versions
    ]
    old, new = (group[0] if len(group) == 1 else merge_ledgers(group) for group in groups)
    return dict(old), dict(new)


def _index(ledger: Mapping[str, Any]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {(e["claim"], e["model"], e["family"]): e for e in ledger["claims"]}


def _plain(entry: Mapping[str, Any] | None) -> str:
    return "absent" if entry is None else _cell(entry).replace("**", "")


_ROUTINE = {
    "claim", "model", "family", "kind", "profile", "preregistration_version", "verdict",
    "statistic", "threshold", "observed", "message", "caveat", "caveats",
}  # fmt: skip


def _finding(entry: Mapping[str, Any]) -> str:
    """The ledger's message, or (a passing claim has none) its numbers."""
    if entry.get("message"):
        text = str(entry["message"])
    else:
        numbers = ", ".join(
            f"{k} = {_number(v)}" for k, v in sorted(entry.items()) if k not in _ROUTINE
        )
        text = f"observed {_number(entry.get('observed'))}, threshold "
        text += f"{_number(entry.get('threshold'))}" + (f"; {numbers}" if numbers else "")
    caveats = entry.get("caveats") or ([entry["caveat"]] if entry.get("caveat") else [])
    return text + "".join(f" (caveat: {c})" for c in caveats)


def _touching(claim: str, experiment_of: Mapping[str, str], amendments: Sequence[Amendment]):
    wanted = {claim, experiment_of.get(claim, "")}
    return [a for a in amendments if a.names & wanted]


def markdown_changes(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    amendments: Sequence[Amendment] = (),
    experiment_of: Mapping[str, str] | None = None,
) -> str:
    """The side-by-side table of the claims both ledgers ran, then every changed cell
    with both findings and the amendments (versions after ``old``'s, up to ``new``'s)
    that name its claim or experiment."""
    experiment_of = experiment_of or {}
    v_old = old.get("preregistration_version") or 0
    v_new = new.get("preregistration_version") or 0
    between = [a for a in amendments if v_old < a.version <= v_new]
    a, b = _index(old), _index(new)
    shared = {k[0] for k in a} & {k[0] for k in b}
    only_old = sorted({k[0] for k in a} - shared)
    keys = sorted(k for k in set(a) | set(b) if k[0] in shared)
    lines = [
        f"Pre-registration v{v_old} ({old.get('profile')}) -> v{v_new} ({new.get('profile')}): "
        f"{len(keys)} cells of {len(shared)} claims run by both.",
        "",
        f"| claim | model | family | v{v_old} | v{v_new} | |",
        "|---|---|---|---|---|---|",
    ]
    changed = []
    for key in keys:
        before, after = a.get(key), b.get(key)
        moved = _plain(before) != _plain(after) and (
            before is None or after is None or before["verdict"] != after["verdict"]
        )
        if moved:
            changed.append(key)
        lines.append(
            f"| {' | '.join(key)} | {_plain(before)} | {_plain(after)} | "
            f"{'changed' if moved else ''} |"
        )
    only_new = sorted({k[0] for k in b} - shared)
    if only_old:
        lines += ["", f"Not in the v{v_new} ledgers given: {', '.join(only_old)}."]
    if only_new:
        lines += ["", f"Only in the v{v_new} ledgers given: {', '.join(only_new)}."]
    lines += ["", f"### Why each of the {len(changed)} changed verdicts changed", ""]
    if not changed:
        lines.append("No verdict changed.")
    for key in changed:
        before, after = a.get(key), b.get(key)
        lines.append(f"- **{' '.join(key)}**: {_plain(before)} -> {_plain(after)}.")
        for version, entry in ((v_old, before), (v_new, after)):
            if entry is not None and entry["verdict"] != "skipped":
                lines.append(f"  - v{version}: {_finding(entry)}")
        for amendment in _touching(key[0], experiment_of, between):
            lines.append(
                f"  - amendment {amendment.number} (v{amendment.version}, issue "
                f"{amendment.issue}): {amendment.headline}"
            )
    general = [am for am in between if not am.names]
    if general and changed:
        lines += ["", "Amendments that name no claim or experiment (they apply to every claim):"]
        lines += [
            f"- amendment {am.number} (v{am.version}, issue {am.issue}): {am.headline}"
            for am in general
        ]
    return "\n".join(lines) + "\n"
