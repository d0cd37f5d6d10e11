"""A group difference within strata, tested by permuting labels within strata (C5a, v3).

Stimuli carry a binary label (failure or success), a stratum (the flip type) and a
unit (the cluster they were made from). Per stratum ``f`` with both groups, ``d_f`` is
the difference of two ratios of means (successes minus failures) of a per-stimulus
numerator over a per-stimulus denominator; the statistic pools them with weights
``w_f = n_s n_f / (n_s + n_f)``:

    s = sum_f w_f d_f / sum_f w_f

The null (labels independent of the values given the stratum) is tested by permuting
labels within strata. A unit (a cluster of stimuli that share sentences, e.g. the
negation_add and negation_remove conflicts of one sentence pair, or a time swap and its
reverse) keeps its labels together: units with the same multiset of strata are permuted
as wholes, each stimulus taking the label of the stimulus in the same position (same
stratum, same rank within it) of its new unit. One-sided:
``p = (1 + #{s_perm >= s_obs}) / (1 + P)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from listenkit.stats.resampling import BLOCK

__all__ = ["stratified_difference", "stratified_permutation_test"]


def _per_stratum(num, den, labels, strata_index, n_strata):
    """``[rows, strata]`` success and failure ratios and counts for label rows ``[rows, n]``."""
    labels = np.atleast_2d(labels).astype(np.float64)
    succ = 1.0 - labels
    onehot = np.zeros((len(num), n_strata))
    onehot[np.arange(len(num)), strata_index] = 1.0
    out = {}
    for name, mask in (("s", succ), ("f", labels)):
        n = mask @ onehot
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = ((mask * num) @ onehot) / ((mask * den) @ onehot)
        out[f"n_{name}"] = n
    return out


def _pooled(parts) -> np.ndarray:
    n_s, n_f = parts["n_s"], parts["n_f"]
    both = (n_s > 0) & (n_f > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(both, n_s * n_f / (n_s + n_f), 0.0)
        d = np.where(both, parts["s"] - parts["f"], 0.0)
        return (w * d).sum(axis=1) / w.sum(axis=1)


def stratified_difference(
    num: np.ndarray, den: np.ndarray, failures: np.ndarray, strata: Sequence[str]
) -> dict:
    """``s`` and its parts per stratum (module docstring); ``s`` is NaN when no stratum
    has both groups."""
    names = sorted(set(strata))
    index = np.array([names.index(s) for s in strata])
    parts = _per_stratum(
        np.asarray(num, float), np.asarray(den, float), failures, index, len(names)
    )
    per = {
        name: {
            "successes": int(parts["n_s"][0, j]),
            "failures": int(parts["n_f"][0, j]),
            "success_ratio": float(parts["s"][0, j]) if parts["n_s"][0, j] else None,
            "failure_ratio": float(parts["f"][0, j]) if parts["n_f"][0, j] else None,
        }
        for j, name in enumerate(names)
    }
    return {"statistic": float(_pooled(parts)[0]), "per_stratum": per}


def stratified_permutation_test(
    num: np.ndarray,
    den: np.ndarray,
    failures: np.ndarray,
    strata: Sequence[str],
    units: Sequence[str],
    *,
    rng: np.random.Generator,
    n_permutations: int = 10_000,
) -> dict:
    """The one-sided permutation p of ``s > 0`` (failures lower), labels permuted within
    strata, units kept whole (module docstring)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    failures = np.asarray(failures, bool)
    if not (len(num) == len(den) == len(failures) == len(strata) == len(units)):
        raise ValueError("num, den, failures, strata and units must have one entry per stimulus")
    observed = stratified_difference(num, den, failures, strata)
    if not np.isfinite(observed["statistic"]):
        return observed | {"p_value": None, "reason": "no stratum has both groups"}
    names = sorted(set(strata))
    index = np.array([names.index(s) for s in strata])
    # unit -> its stimuli ordered by (stratum, index); units grouped by their multiset of
    # strata, so that a permutation moves labels between stimuli of the same stratum only
    members: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for i, (unit, stratum) in enumerate(zip(units, strata, strict=True)):
        members[unit].append((stratum, i))
    groups: dict[tuple[str, ...], list[list[int]]] = defaultdict(list)
    for entries in members.values():
        entries.sort()
        groups[tuple(s for s, _ in entries)].append([i for _, i in entries])
    exceed, done = 0, 0
    while done < n_permutations:
        block = min(BLOCK, n_permutations - done)
        labels = np.empty((block, len(num)), dtype=bool)
        for rows in groups.values():
            idx = np.asarray(rows)  # [units, strata of the group]
            order = np.argsort(rng.random((block, len(idx))), axis=1)
            labels[:, idx] = failures[idx][order]
        s = _pooled(_per_stratum(num, den, labels, index, len(names)))
        exceed += int(np.count_nonzero(~np.isfinite(s) | (s >= observed["statistic"])))
        done += block
    return observed | {
        "p_value": float((1 + exceed) / (1 + n_permutations)),
        "n_permutations": int(n_permutations),
        "unit_groups": {"+".join(k): len(v) for k, v in groups.items()},
    }
