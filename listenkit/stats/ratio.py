"""Effects as a ratio of means over stimuli (pre-registration v2).

A layer curve is ``E(l) = sum_i num[i, l] / sum_i den[i]``; for patching,
``num = m_patched(l) - m_base`` and ``den = m_source - m_base`` (the gap the
corruption opened, at least the floor in the expected direction, so ``den > 0``).
Per-stimulus ratios ``num / den`` stay available for evidence and plots, but no
single stimulus with a small gap can dominate ``E``. A bootstrap resample with
counts ``C`` gives ``E* = (C @ num) / (C @ den)``. A plain ``[stimuli x layers]``
array is the special case ``den = 1`` (the ratio of means is then the mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from listenkit.stats.resampling import as_rows

__all__ = ["RatioOfMeans", "as_ratio"]


@dataclass(frozen=True)
class RatioOfMeans:
    """Per-stimulus numerators ``num [n, layers]`` and denominators ``den [n]`` (> 0)."""

    num: np.ndarray
    den: np.ndarray

    def __post_init__(self) -> None:
        num = as_rows(self.num, "numerators")
        den = np.asarray(self.den, dtype=np.float64)
        if den.shape != (num.shape[0],):
            raise ValueError(f"need one denominator per stimulus: {den.shape} vs {num.shape}")
        if not np.all(np.isfinite(den)) or np.any(den <= 0):
            raise ValueError(
                "denominators must be finite and > 0 (apply the signed floor before the ratio)"
            )
        object.__setattr__(self, "num", num)
        object.__setattr__(self, "den", den)

    @classmethod
    def of_means(cls, effects: np.ndarray) -> RatioOfMeans:
        """Plain per-stimulus effects: ``den = 1``, so the ratio of means is the mean."""
        effects = as_rows(effects)
        return cls(effects, np.ones(effects.shape[0]))

    @property
    def n(self) -> int:
        return self.num.shape[0]

    def value(self) -> np.ndarray:
        """``E(l) = sum num[:, l] / sum den`` per layer."""
        return self.num.sum(axis=0) / self.den.sum()

    def per_stimulus(self) -> np.ndarray:
        """``num / den`` per stimulus (evidence and plots; not what the claims test)."""
        return self.num / self.den[:, None]

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        """``[resamples, layers]``: ``(C @ num) / (C @ den)`` for count matrices ``C``."""
        return (counts @ self.num) / (counts @ self.den)[:, None]

    def subset(self, rows: np.ndarray) -> RatioOfMeans:
        """The stimuli selected by a boolean mask or an index array."""
        return RatioOfMeans(self.num[rows], self.den[rows])


def as_ratio(effects: np.ndarray | RatioOfMeans) -> RatioOfMeans:
    """``effects`` as a ``RatioOfMeans`` (plain arrays: ``den = 1``)."""
    return effects if isinstance(effects, RatioOfMeans) else RatioOfMeans.of_means(effects)
