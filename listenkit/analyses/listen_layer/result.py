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

from listenkit.engine.metrics import normalized_recovery
from listenkit.engine.sites import Site
from listenkit.stats import Curve, bootstrap_curve

__all__ = ["Sweep"]


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """Result of patching one site at each of ``layers`` for every stimulus.

    ``clean``/``corrupt`` are the unpatched metric values [n]; ``patched`` is [n, layers].
    ``effects`` is the normalised recovery ``(m_patched - m_base) / (m_source - m_base)``
    (base = corrupt for denoising, clean for noising), NaN for excluded stimuli.
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

    @functools.cached_property
    def _recovery(self) -> tuple[np.ndarray, np.ndarray]:
        return normalized_recovery(self.patched, self.base, self.source, floor=self.floor)

    @property
    def effects(self) -> np.ndarray:
        return self._recovery[0]

    @property
    def included(self) -> np.ndarray:
        return self._recovery[1]

    @property
    def excluded_ids(self) -> tuple[str, ...]:
        return tuple(i for i, keep in zip(self.ids, self.included, strict=True) if not keep)

    def included_effects(self) -> np.ndarray:
        """Effects of the included stimuli only: [n_included, layers]."""
        return self.effects[self.included]

    def curve(self, *, seed: int = 0, n_resamples: int = 10_000, confidence: float = 0.95) -> Curve:
        """Mean effect per layer with a percentile bootstrap CI over included stimuli."""
        return bootstrap_curve(
            self.included_effects(),
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
