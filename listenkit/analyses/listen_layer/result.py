"""``Sweep``: per-stimulus metric values and normalised effects of one site over layers."""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from listenkit.analyses.effects import StimulusEffects
from listenkit.engine.metrics import normalized_recovery
from listenkit.engine.sites import Site
from listenkit.stats import Curve, RatioOfMeans, bootstrap_curve

__all__ = ["Sweep"]


@dataclass(frozen=True, kw_only=True)
class Sweep(StimulusEffects):
    """Result of patching one site at each of ``layers`` for every stimulus.

    ``clean``/``corrupt`` are the unpatched metric values [n]; ``patched`` is [n, layers].
    A stimulus is included iff ``m_clean - m_corrupt >= floor`` (signed: the corruption
    must lower the metric by at least the floor). The layer curve is the ratio of means

        E(l) = sum_i (m_patched[i, l] - m_base[i]) / sum_i (m_source[i] - m_base[i])

    over included stimuli (``ratio()``; base = corrupt for denoising, clean for noising).
    ``effects`` is the per-stimulus normalised recovery
    ``(m_patched - m_base) / (m_source - m_base)``, NaN for excluded stimuli: evidence
    and plots, not what the claims test.
    """

    site: Site
    metric: str
    mode: str
    reference: str
    layers: tuple[int, ...]
    ids: tuple[str, ...]
    clean: np.ndarray
    corrupt: np.ndarray
    patched: np.ndarray
    floor: float

    @property
    def source(self) -> np.ndarray:
        return self.clean if self.mode == "denoise" else self.corrupt

    @property
    def base(self) -> np.ndarray:
        return self.corrupt if self.mode == "denoise" else self.clean

    @property
    def direction(self) -> int:
        """+1 when the source run should score higher than the base run (denoising)."""
        return 1 if self.mode == "denoise" else -1

    @functools.cached_property
    def _recovery(self) -> tuple[np.ndarray, np.ndarray]:
        return normalized_recovery(
            self.patched, self.base, self.source, floor=self.floor, direction=self.direction
        )

    @property
    def effects(self) -> np.ndarray:
        return self._recovery[0]

    def gaps(self) -> tuple[np.ndarray, ...]:
        """``direction * (m_source - m_base)``: what the signed floor applies to."""
        return (self.direction * (self.source - self.base),)

    def included_effects(self) -> np.ndarray:
        """Per-stimulus effects of the included stimuli only: [n_included, layers]."""
        return self.effects[self.included]

    def ratio(self, rows: np.ndarray | None = None) -> RatioOfMeans:
        """``E(l)`` as a ratio of means over the included stimuli (or ``rows`` of them):
        what the claims test."""
        keep, s = self.rows(rows), self.direction
        return RatioOfMeans(
            s * (self.patched[keep] - self.base[keep, None]), s * (self.source - self.base)[keep]
        )

    def curve(self, *, seed: int = 0, n_resamples: int = 10_000, confidence: float = 0.95) -> Curve:
        """``E(l)`` (ratio of means) with a percentile bootstrap CI over included stimuli."""
        return bootstrap_curve(
            self.ratio(),
            self.layers,
            rng=np.random.default_rng(seed),
            n_resamples=n_resamples,
            confidence=confidence,
        )

    def to_records(self) -> list[dict[str, Any]]:
        """One record per (stimulus, layer)."""
        effects, included = self.effects, self.included
        records = []
        for i, sid in enumerate(self.ids):
            for j, layer in enumerate(self.layers):
                records.append(
                    {
                        "id": sid,
                        "layer": layer,
                        "clean": float(self.clean[i]),
                        "corrupt": float(self.corrupt[i]),
                        "patched": float(self.patched[i, j]),
                        "effect": None if not included[i] else float(effects[i, j]),
                        "included": bool(included[i]),
                    }
                )
        return records

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site.to_dict(),
            "metric": self.metric,
            "mode": self.mode,
            "reference": self.reference,
            "floor": self.floor,
            "floor_rule": "signed: m_clean - m_corrupt >= floor",
            "layers": list(self.layers),
            "ids": list(self.ids),
            "clean": self.clean.tolist(),
            "corrupt": self.corrupt.tolist(),
            "patched": self.patched.tolist(),
            "n_included": int(self.included.sum()),
            "excluded_ids": list(self.excluded_ids),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sweep:
        return cls(
            site=Site.from_dict(data["site"]),
            metric=data["metric"],
            mode=data["mode"],
            reference=data["reference"],
            layers=tuple(data["layers"]),
            ids=tuple(data["ids"]),
            clean=np.asarray(data["clean"]),
            corrupt=np.asarray(data["corrupt"]),
            patched=np.asarray(data["patched"]),
            floor=data["floor"],
        )

    def to_csv(self, path: str | Path | None = None) -> str:
        buffer = io.StringIO()
        records = self.to_records()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
        if path is not None:
            Path(path).write_text(buffer.getvalue())
        return buffer.getvalue()
