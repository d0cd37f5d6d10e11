"""A chosen set of encoder heads against layer-matched random sets (E4 v3).

The null of "these heads, not others of their layers": random sets with the chosen
set's layer histogram (``c_l`` heads in layer ``l``), distinct heads within a layer.
There are ``M = prod_l C(H, c_l)`` such sets. When ``M - 1 <= R`` every other set is
evaluated (an exact permutation p); otherwise ``R`` are drawn uniformly.

Per set, on the test items (``i``):

- ``recovery``: patched from the clean run into the corrupt run,
  ``V = sum_i (m_i(set) - m_corrupt_i) / sum_i (m_clean_i - m_corrupt_i)``;
- ``knockout``: mean-ablated in the clean run (means from other runs, e.g. half A's),
  ``V = mean_i (m_clean_i - m_i(set))`` in nats.

The p-value is sequential (Besag & Clifford 1991): the random sets are evaluated in
their drawn order, ``chunk`` at a time; the test stops once ``h`` of them reach the
chosen set's value (within ``tie_rtol``): ``p = h / n``; else ``p = (1 + #{V_r >= V})
/ (1 + R)`` over all ``R``. The margin statistic bootstraps the test items:
``V_chosen - q95(V_random)`` in every resample; its lower bound is the 5th percentile.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from listenkit.analyses.heads import layer_matched_head_sets
from listenkit.engine.batch import PatchItem
from listenkit.engine.head_sets import HeadSet, run_head_sets
from listenkit.models.speech_model import SpeechModel
from listenkit.stats import sequential_p_value

__all__ = [
    "HeadSetTest",
    "RunSets",
    "layer_histogram",
    "layer_matched_null",
    "margin_bound",
    "n_layer_matched_sets",
    "sequential_head_set_test",
    "set_values",
]

STATISTICS = ("recovery", "knockout")

# (m_source [n], m_base [n], m_patched [n, sets]) for a list of sets
RunSets = Callable[[int, Sequence[HeadSet]], tuple[np.ndarray, np.ndarray, np.ndarray]]


def layer_histogram(chosen: Sequence[tuple[int, int]]) -> dict[int, int]:
    """``{layer: number of chosen heads in it}``."""
    return dict(sorted(Counter(int(layer) for layer, _ in chosen).items()))


def n_layer_matched_sets(chosen: Sequence[tuple[int, int]], n_heads: int) -> int:
    """``M = prod_l C(n_heads, c_l)``: the number of distinct layer-matched sets."""
    return math.prod(math.comb(n_heads, c) for c in layer_histogram(chosen).values())


def layer_matched_null(
    chosen: Sequence[tuple[int, int]], n_heads: int, r: int, rng: np.random.Generator
) -> tuple[list[HeadSet], bool]:
    """The random sets of the test and whether they are exhaustive: every other
    layer-matched set, in an order shuffled by ``rng`` (the sequential rule reads them
    in order), when ``M - 1 <= r``; else ``r`` uniform draws (distinct heads within a
    layer; a draw may equal the chosen set or another draw)."""
    histogram = layer_histogram(chosen)
    mine = tuple(sorted((int(la), int(h)) for la, h in chosen))
    if n_layer_matched_sets(chosen, n_heads) - 1 <= r:
        per_layer = [
            [
                tuple((layer, h) for h in combo)
                for combo in itertools.combinations(range(n_heads), c)
            ]
            for layer, c in histogram.items()
        ]
        every = (
            tuple(sorted(h for part in parts for h in part))
            for parts in itertools.product(*per_layer)
        )
        others = [s for s in every if s != mine]
        return [others[i] for i in rng.permutation(len(others))], True
    return layer_matched_head_sets(chosen, n_heads, r, rng), False


def set_values(
    statistic: str,
    source: np.ndarray,
    base: np.ndarray,
    patched: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """``V`` of every set (columns of ``patched``, ``[n, sets]``): ``[sets]``, or per row
    of ``weights`` (``[B, n]`` item counts of bootstrap resamples) ``[B, sets]``."""
    w = np.ones((1, len(source))) if weights is None else np.asarray(weights, float)
    if statistic == "recovery":
        value = (w @ (patched - base[:, None])) / (w @ (source - base))[:, None]
    else:
        value = (w @ (source[:, None] - patched)) / w.sum(axis=1)[:, None]
    return value[0] if weights is None else value


@dataclass(frozen=True, kw_only=True)
class HeadSetTest:
    """Per-item metrics of the evaluated sets: ``sets[0]`` the chosen set, then
    ``n_extra`` reported sets (e.g. all heads), then the random sets in drawn order."""

    statistic: str
    sets: list  # [HeadSet]
    n_extra: int
    source: np.ndarray  # [n] m_clean (knockout: the clean run, = base)
    base: np.ndarray  # [n] m_corrupt (knockout: m_clean)
    patched: np.ndarray  # [n, len(sets)]
    p_value: float
    hits: int
    n_evaluated: int
    stopped_early: bool
    R: int
    h: int
    tie_rtol: float
    exhaustive: bool

    def values(self, weights: np.ndarray | None = None) -> np.ndarray:
        """``V`` of every set (``[sets]``), or per row of ``weights`` (``[B, n]`` item
        counts of bootstrap resamples) as ``[B, sets]``."""
        return set_values(self.statistic, self.source, self.base, self.patched, weights)

    @property
    def observed(self) -> float:
        return float(self.values()[0])

    @property
    def null(self) -> np.ndarray:
        """``V`` of the random sets the sequential rule drew (in order)."""
        start = 1 + self.n_extra
        return self.values()[start : start + self.n_evaluated]

    @property
    def smallest_p(self) -> float:
        """The smallest p the test can give: ``1 / (1 + R)``."""
        return 1.0 / (1 + self.R)

    def to_dict(self) -> dict:
        values = self.values()
        extra = slice(1, 1 + self.n_extra)
        return {
            "statistic": self.statistic,
            "observed": float(values[0]),
            "extra": {
                str(list(s)): float(v) for s, v in zip(self.sets[extra], values[extra], strict=True)
            },
            "null": self.null.tolist(),
            "p_value": self.p_value,
            "hits": self.hits,
            "n_evaluated": self.n_evaluated,
            "stopped_early": self.stopped_early,
            "R": self.R,
            "h": self.h,
            "tie_rtol": self.tie_rtol,
            "exhaustive": self.exhaustive,
        }


def sequential_head_set_test(
    model: SpeechModel,
    items: Sequence[PatchItem],
    chosen: HeadSet,
    random_sets: Sequence[HeadSet],
    *,
    statistic: str,
    h: int,
    chunk: int,
    means: dict[int, torch.Tensor] | None = None,
    extra_sets: Sequence[HeadSet] = (),
    tie_rtol: float = 0.0,
    exhaustive: bool = False,
    run_sets: RunSets | None = None,
) -> HeadSetTest:
    """Evaluate ``chosen`` (with ``extra_sets``) and the random sets ``chunk`` at a time
    until the sequential rule decides (module docstring). ``means``: knockout's mean
    outputs (``head_means``), required for ``statistic="knockout"``. ``run_sets(j,
    sets)`` evaluates chunk ``j`` (default: ``run_head_sets``; a caller may cache it)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    if statistic == "knockout" and means is None and run_sets is None:
        raise ValueError("knockout needs means (head_means over reference runs)")
    if not random_sets or chunk < 1:
        raise ValueError("need at least one random set and chunk >= 1")
    if run_sets is None:
        if statistic == "knockout":
            items = [PatchItem(id=it.id, source=it.source, base=it.source) for it in items]

        def run_sets(_j, sets):
            return run_head_sets(model, items, sets, means=means)

    leading = [tuple(chosen), *map(tuple, extra_sets)]
    chunks = [list(random_sets[i : i + chunk]) for i in range(0, len(random_sets), chunk)]
    source, base, first = run_sets(0, leading + chunks[0])
    parts = [first]

    observed = float(set_values(statistic, source, base, first)[0])

    def draws():
        for j in range(len(chunks)):
            if j:
                parts.append(run_sets(j, chunks[j])[2])
            values = set_values(statistic, source, base, parts[j])
            yield from values[len(leading) if j == 0 else 0 :]

    result = sequential_p_value(
        observed, draws(), h=h, max_draws=len(random_sets), tie_rtol=tie_rtol
    )
    patched = np.concatenate(parts, axis=1)  # chosen, extras, the chunks evaluated
    return HeadSetTest(
        statistic=statistic,
        sets=[*leading, *random_sets][: patched.shape[1]],
        n_extra=len(extra_sets),
        source=source,
        base=base,
        patched=patched,
        p_value=result.p,
        hits=result.hits,
        n_evaluated=result.n,
        stopped_early=result.stopped_early,
        R=len(random_sets),
        h=h,
        tie_rtol=tie_rtol,
        exhaustive=exhaustive,
    )


def margin_bound(
    test: HeadSetTest,
    rng: np.random.Generator,
    resamples: int,
    *,
    quantile: float = 0.95,
    level: float = 0.95,
) -> dict:
    """Bootstrap over the test items of ``V_chosen - q(V_random)`` (``q``: the
    ``quantile`` of the random sets' values in the same resample): the observed margin
    and its one-sided lower bound (the ``1 - level`` percentile). Undefined (``None``)
    when the test stopped early (not every random set was evaluated)."""
    if test.stopped_early:
        return {"margin": None, "lower_bound": None, "why": "the sequential test stopped early"}
    n = len(test.source)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    values = test.values(weights)
    start = 1 + test.n_extra
    margins = values[:, 0] - np.quantile(values[:, start:], quantile, axis=1)
    observed = test.values()
    return {
        "margin": float(observed[0] - np.quantile(observed[start:], quantile)),
        "lower_bound": float(np.quantile(margins, 1 - level)),
        "quantile": quantile,
        "level": level,
        "resamples": int(resamples),
        "undefined_resamples": int(np.count_nonzero(~np.isfinite(margins))),
    }
