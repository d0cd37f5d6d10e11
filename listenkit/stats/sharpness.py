"""Is the peak sharp? Cross-fitted: choose ``L*`` on one half of the stimuli, test it
on the other (pre-registration v2).

Choosing ``L*`` and the runner-up on the same data and then bootstrapping their
difference inflates false positives (two tied layers: the lower bound is above 0 in
6-7% of datasets for a nominal 2.5%). Here:

1. ``split_halves``: stimulus ``i`` goes to half A iff the first byte of
   ``sha256(salt + "\\x1f" + id_i)`` is even (pre-registered salt; no data involved).
2. ``L* = argmax_l E_A(l)`` on half A (ties: the lowest layer).
3. On half B, for every other layer ``l``: ``d(l) = E_B(L*) - E_B(l)``, with
   simultaneous lower bounds by the studentized max-T bootstrap over B's stimuli:
   ``c = q_conf(max_l (d*(l) - d(l)) / se(l))``, ``lower(l) = d(l) - c se(l)``,
   ``se(l)`` the bootstrap standard deviation of ``d*(l)``. A resample in which a
   difference is undefined (gc) counts as ``+inf`` (against sharpness).
4. Sharp iff every ``lower(l) > 0``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import nan_argmax, resample_counts

__all__ = [
    "cross_fitted_sharpness",
    "max_t_lower_bounds",
    "peak_comparisons",
    "simultaneous_peak_test",
    "split_halves",
]


def split_halves(ids: Sequence[str], *, salt: str) -> np.ndarray:
    """``True`` for half A (discovery), ``False`` for half B (test), from a hash of each id."""
    if len(set(ids)) != len(ids):
        raise ValueError("stimulus ids must be unique to split them")
    return np.array(
        [hashlib.sha256(f"{salt}\x1f{i}".encode()).digest()[0] % 2 == 0 for i in ids], dtype=bool
    )


def max_t_lower_bounds(
    observed: np.ndarray, boot: np.ndarray, *, confidence: float = 0.95
) -> tuple[np.ndarray, float]:
    """Simultaneous one-sided lower bounds ``observed - c se`` (studentized max-T).

    ``boot`` is ``[resamples, K]``; non-finite entries count as ``+inf`` deviations.
    Returns ``(lower [K], c)``; a comparison with ``se = 0`` has ``lower = observed``.
    """
    observed = np.asarray(observed, dtype=np.float64)
    boot = np.asarray(boot, dtype=np.float64)
    finite = np.isfinite(boot)
    masked = np.where(finite, boot, np.nan)
    with np.errstate(invalid="ignore"):
        se = np.nanstd(masked, axis=0, ddof=1) if boot.shape[0] > 1 else np.zeros_like(observed)
    se = np.where(np.isfinite(se), se, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(se > 0, (boot - observed) / se, 0.0)
    dev = np.where(finite, dev, np.inf)
    c = float(np.quantile(dev.max(axis=1), confidence, method="higher"))
    lower = np.where(se > 0, observed - c * se, observed)
    if not np.isfinite(c):
        lower = np.where(se > 0, -np.inf, observed)
    return lower, c


def simultaneous_peak_test(
    observed_a: np.ndarray,
    observed_b: np.ndarray,
    resampled_b: Callable[[np.ndarray], np.ndarray],
    n_b: int,
    layers: Sequence[int],
    rng: np.random.Generator,
    n_resamples: int,
    confidence: float,
) -> dict:
    """Steps 2-4 for any curve: ``L*`` = argmax of ``observed_a``; max-T lower bounds of
    ``observed_b[L*] - observed_b[l]`` with ``resampled_b(counts) -> [block, layers]``
    giving half B's curve per bootstrap resample. ``sharp`` is None with a ``reason``
    when the statistic is undefined."""
    layers = [int(x) for x in layers]
    peak = int(nan_argmax(observed_a))
    base = {"n_resamples": n_resamples, "confidence": confidence}
    if peak < 0:
        return base | {"sharp": None, "reason": "the curve is undefined at every layer on A"}
    if not np.isfinite(observed_b[peak]):
        return base | {
            "L_star": layers[peak],
            "sharp": None,
            "reason": f"the curve is undefined at L* = {layers[peak]} on half B",
        }
    others = [j for j in range(len(layers)) if j != peak and np.isfinite(observed_b[j])]
    if not others:
        return base | {
            "L_star": layers[peak],
            "sharp": None,
            "reason": "no other layer with a defined value on half B",
        }
    d = observed_b[peak] - observed_b[others]
    boot = np.vstack(
        [
            (lambda e: e[:, [peak]] - e[:, others])(resampled_b(c))
            for c in resample_counts(n_b, n_resamples, rng)
        ]
    )
    lower, c = max_t_lower_bounds(d, boot, confidence=confidence)
    return base | {
        "L_star": layers[peak],
        "critical_value": c,
        "comparisons": [
            {"layer": layers[j], "difference": float(dj), "lower_bound": float(lo)}
            for j, dj, lo in zip(others, d, lower, strict=True)
        ],
        "min_lower_bound": float(lower.min()),
        "closest_layer": layers[others[int(np.argmin(lower))]],
        "sharp": bool(np.all(lower > 0)),
    }


def cross_fitted_sharpness(
    effects: np.ndarray | RatioOfMeans,
    layers: Sequence[int],
    in_a: np.ndarray,
    *,
    rng: np.random.Generator,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> dict:
    """Choose ``L*`` on half A (``in_a``), test ``E_B(L*) - E_B(l) > 0`` for every other
    ``l`` on half B with simultaneous max-T lower bounds. ``sharp`` is None (and
    ``reason`` says why) when a half is empty."""
    ratio = as_ratio(effects)
    in_a = np.asarray(in_a, dtype=bool)
    if in_a.shape != (ratio.n,):
        raise ValueError(f"in_a needs one flag per stimulus ({ratio.n})")
    n_a, n_b = int(in_a.sum()), int((~in_a).sum())
    if n_a == 0 or n_b == 0:
        return {"n_a": n_a, "n_b": n_b, "sharp": None, "reason": "one half has no stimuli"}
    a, b = ratio.subset(in_a), ratio.subset(~in_a)
    result = simultaneous_peak_test(
        a.value(), b.value(), b.resampled, b.n, layers, rng, n_resamples, confidence
    )
    return {"n_a": n_a, "n_b": n_b} | result


def peak_comparisons(
    peak: int,
    observed_b: np.ndarray,
    resampled_b: Callable[[np.ndarray], np.ndarray],
    counts: Iterable[np.ndarray],
    layers: Sequence[int],
    *,
    threshold: float = 0.0,
    inclusive: bool = False,
    max_undefined_share: float | None = None,
    confidence: float = 0.95,
) -> dict:
    """Pre-registration v3's sharpness: the peak layer (index ``peak``, chosen on the
    other half) against every other layer on this half, each comparison decided on its
    own: ``d(l) = curve(peak) - curve(l)`` with simultaneous studentized max-T lower
    bounds over the resamples (``counts``: blocks of per-stimulus counts, e.g. a
    cluster bootstrap); comparison ``l`` passes iff ``lower(l) > threshold`` (``>=``
    with ``inclusive``). With ``max_undefined_share``, a layer whose curve is undefined
    (NaN) in more resamples than that is excluded and listed (a caveat), ``sharp`` is
    None when the peak itself is, and the bounds come from the resamples in which every
    compared layer is defined (the share dropped is reported); without it, undefined
    resamples count against.
    ``sharp`` (all comparisons pass) is None with a ``reason`` when nothing can be
    compared."""
    layers = [int(x) for x in layers]
    base = {"L_star": layers[peak], "confidence": confidence, "threshold": threshold}
    if not np.isfinite(observed_b[peak]):
        return base | {"sharp": None, "reason": f"undefined at L* = {layers[peak]} on half B"}
    boot = np.vstack([resampled_b(c) for c in counts])
    undefined = np.mean(~np.isfinite(boot), axis=0)
    excluded = []
    if max_undefined_share is not None:
        if undefined[peak] > max_undefined_share:
            return base | {
                "sharp": None,
                "reason": f"undefined at L* = {layers[peak]} in {undefined[peak]:.1%} of "
                f"half B's resamples (more than {max_undefined_share:.0%})",
            }
        defined = [j for j in range(len(layers)) if j != peak and np.isfinite(observed_b[j])]
        excluded = [j for j in defined if undefined[j] > max_undefined_share]
    others = [j for j in range(len(layers))
              if j != peak and np.isfinite(observed_b[j]) and j not in excluded]  # fmt: skip
    undefined_layers = [layers[j] for j in range(len(layers)) if not np.isfinite(observed_b[j])]
    caveats = {
        "excluded_layers": [
            {"layer": layers[j], "undefined_share": float(undefined[j])} for j in excluded
        ],
        "undefined_layers": undefined_layers,
    }
    if not others:
        return base | caveats | {"sharp": None, "reason": "no other layer to compare on half B"}
    d = observed_b[peak] - observed_b[others]
    differences = boot[:, [peak]] - boot[:, others]
    if max_undefined_share is not None:  # the bounds from resamples where all are defined
        complete = np.isfinite(differences).all(axis=1)
        caveats["resamples_dropped_share"] = float(1 - complete.mean())
        if complete.sum() < 2:
            return (
                base
                | caveats
                | {
                    "sharp": None,
                    "reason": "fewer than 2 resamples have every compared layer defined",
                }
            )
        differences = differences[complete]
    lower, c = max_t_lower_bounds(d, differences, confidence=confidence)
    passes = lower >= threshold if inclusive else lower > threshold
    comparisons = [
        {"layer": layers[j], "difference": float(dj), "lower_bound": float(lo), "passes": bool(ok)}
        for j, dj, lo, ok in zip(others, d, lower, passes, strict=True)
    ]
    return (
        base
        | caveats
        | {
            "critical_value": c,
            "comparisons": comparisons,
            "min_lower_bound": float(lower.min()),
            "closest_layer": layers[others[int(np.argmin(lower))]],
            "failing_layers": [cmp["layer"] for cmp in comparisons if not cmp["passes"]],
            "sharp": bool(np.all(passes)),
        }
    )
