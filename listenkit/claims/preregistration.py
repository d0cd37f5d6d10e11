"""The pre-registration file: one shape for every experiment, and the grid of cells.

An experiment section ``[eN]`` has ``models`` (a list, or one list per profile),
``families``, ``seed``, ``resamples`` (per profile), ``minimums`` and its claims
``[eN.claims.<id>]`` (statement, source, statistic, threshold, rule, optionally
``multiplicity = "holm"``, ``models``, ``families``) and reported analyses
``[eN.reported.<id>]``. ``Preregistration.cells()`` is the one place the grid
(claim x model x family) is worked out: the test parametrisation, the ledger check and
the report matrix all read it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["RULES", "CellId", "Preregistration", "PreregistrationError"]

RULES = (">=", ">", "<", "<=")


class PreregistrationError(ValueError):
    """The pre-registration file lacks something a claim needs, or is malformed."""


@dataclass(frozen=True, kw_only=True)
class CellId:
    """One cell of the grid: a claim (or reported analysis) on one model and family."""

    experiment: str
    claim: str
    model: str
    family: str
    kind: str = "claim"  # or "secondary" (reported, never a verdict)

    @property
    def id(self) -> str:
        """The pytest id of the cell, e.g. ``whisper-base-noise``."""
        return f"{self.model}-{self.family}"


class Preregistration(Mapping):
    """A parsed pre-registration (read-only mapping of the TOML's top level)."""

    def __init__(self, data: Mapping[str, Any], *, path: Path | None = None, sha256: str = ""):
        self._data = dict(data)
        self.path = path
        self.sha256 = sha256
        if "version" not in self._data:
            raise PreregistrationError("the pre-registration has no 'version'")
        self._claims: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for name in self.experiments:
            section = self._data[name]
            for kind, table in (("claim", "claims"), ("secondary", "reported")):
                for claim_id, spec in section.get(table, {}).items():
                    if claim_id in self._claims:
                        raise PreregistrationError(f"claim {claim_id!r} is defined twice")
                    if kind == "claim":
                        _check_claim(claim_id, spec)
                    self._claims[claim_id] = (name, kind, spec)

    @classmethod
    def load(cls, path: str | Path) -> Preregistration:
        path = Path(path)
        raw = path.read_bytes()
        return cls(tomllib.loads(raw.decode()), path=path, sha256=hashlib.sha256(raw).hexdigest())

    # Mapping
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def version(self) -> int:
        return self._data["version"]

    @property
    def experiments(self) -> list[str]:
        """The experiment sections (tables with ``claims`` or ``reported``), in file order."""
        return [
            k
            for k, v in self._data.items()
            if isinstance(v, dict) and ("claims" in v or "reported" in v)
        ]

    def claim_ids(self, kind: str | None = "claim") -> list[str]:
        return [c for c, (_, k, _) in self._claims.items() if kind is None or k == kind]

    def claim(self, claim_id: str) -> dict[str, Any]:
        """The claim's (or reported analysis's) table."""
        return self._entry(claim_id)[2]

    def kind(self, claim_id: str) -> str:
        return self._entry(claim_id)[1]

    def experiment_of(self, claim_id: str) -> str:
        return self._entry(claim_id)[0]

    def section(self, claim_id: str) -> dict[str, Any]:
        """The experiment section a claim belongs to."""
        return self._data[self.experiment_of(claim_id)]

    def family(self, name: str) -> dict[str, Any]:
        try:
            return self._data["families"][name]
        except KeyError:
            raise PreregistrationError(f"no [families.{name}] in the pre-registration") from None

    def holm(self, claim_id: str) -> bool:
        return self.claim(claim_id).get("multiplicity") == "holm"

    def models(self, claim_id: str, profile: str | None = None) -> list[str]:
        """The claim's models: all of them (``profile=None``) or those run in ``profile``."""
        models = self.claim(claim_id).get("models", self.section(claim_id).get("models", []))
        if isinstance(models, Mapping):
            if profile is not None:
                return list(models[profile])
            return list(dict.fromkeys(m for ms in models.values() for m in ms))
        return list(models)

    def families(self, claim_id: str) -> list[str]:
        spec = self.claim(claim_id)
        return list(spec.get("families", self.section(claim_id).get("families", [])))

    def cells(self, claim_id: str | None = None, *, kind: str | None = None) -> list[CellId]:
        """Every cell of the grid (of one claim, or of all claims and reported analyses)."""
        ids = [claim_id] if claim_id is not None else self.claim_ids(kind)
        return [
            CellId(experiment=self.experiment_of(c), claim=c, model=m, family=f, kind=self.kind(c))
            for c in ids
            for m in self.models(c)
            for f in self.families(c)
        ]

    def not_in_profile(self, cell: CellId, profile: str) -> str | None:
        """Why the cell does not run in ``profile`` (a skip reason), or None if it runs."""
        spec = self.claim(cell.claim)
        profiles = spec.get("profiles")
        if profiles is not None and profile not in profiles:
            return (
                f"the exploratory {cell.family} family runs in the {' and '.join(profiles)} "
                "profile only (pre-registration: the smoke profile's CI budget)"
            )
        models = self.models(cell.claim, profile)
        if cell.model not in models:
            return (
                f"{cell.experiment.upper()} runs on {', '.join(models)} in the {profile} profile "
                "(CI budget); the full profile covers every model"
            )
        return None

    def resamples(self, claim_id: str, profile: str) -> int:
        section = self.section(claim_id)
        for key in ("resamples", "random_sets"):
            if key in section:
                return int(section[key][profile])
        raise PreregistrationError(f"[{self.experiment_of(claim_id)}] has no resamples")

    def minimum(
        self, claim_id: str, name: str, *, profile: str | None = None, model: str | None = None
    ) -> int:
        """A pre-registered minimum: a number, or a table by profile and then by model
        (``default`` for the models not listed), e.g. ``{smoke = 8, full = {whisper-base =
        90, default = 30}}``."""
        try:
            value = self.section(claim_id)["minimums"][name]
            for key in (profile, model):
                if isinstance(value, Mapping):
                    value = value[key] if key in value else value["default"]
            return int(value)
        except KeyError:
            raise PreregistrationError(
                f"[{self.experiment_of(claim_id)}] has no minimum {name!r} for "
                f"profile {profile!r}, model {model!r}"
            ) from None

    def _entry(self, claim_id: str) -> tuple[str, str, dict[str, Any]]:
        try:
            return self._claims[claim_id]
        except KeyError:
            raise PreregistrationError(f"no claim {claim_id!r} in the pre-registration") from None


def _check_claim(claim_id: str, spec: Mapping[str, Any]) -> None:
    missing = [k for k in ("statement", "statistic", "threshold", "rule") if k not in spec]
    if missing:
        raise PreregistrationError(f"claim {claim_id!r} lacks {', '.join(missing)}")
    if spec["rule"] not in RULES:
        raise PreregistrationError(f"claim {claim_id!r}: rule must be one of {RULES}")
