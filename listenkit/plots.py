"""Evidence plots (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from listenkit.stats import Curve

__all__ = ["plot_layer_claim", "plot_profiles"]


def plot_layer_claim(
    path: str | Path,
    curve: Curve,
    *,
    title: str,
    region: Collection[float] | None = None,
    l_star_samples: np.ndarray | None = None,
    ylabel: str = "normalised recovery",
    extra_curves: dict[str, Curve] | None = None,
    reference_line: float | None = None,
) -> Path:
    """Curve with CI band, claimed region shaded, L* marked; histogram of bootstrap L*."""
    panels = 2 if l_star_samples is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    layers = np.asarray(curve.layers)
    if region:
        lo, hi = min(region), max(region)
        ax.axvspan(lo - 0.5, hi + 0.5, color="tab:green", alpha=0.12, label="claimed region")
    ax.fill_between(layers, curve.low, curve.high, color="tab:blue", alpha=0.25, label="95% CI")
    ax.plot(layers, curve.mean, "o-", color="tab:blue", label="mean")
    for name, other in (extra_curves or {}).items():
        ax.plot(other.layers, other.mean, "s--", alpha=0.7, label=name)
    if reference_line is not None:
        ax.axhline(reference_line, color="grey", lw=0.8)
    peak = int(layers[np.argmax(curve.mean)])
    ax.axvline(peak, color="tab:red", ls=":", label=f"L* = {peak}")
    ax.set_xlabel("encoder layer (from 1)")
    ax.set_ylabel(ylabel)
    ax.set_xticks(layers)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    if l_star_samples is not None:
        ax2 = axes[0, 1]
        counts = [np.mean(l_star_samples == layer) for layer in layers]
        ax2.bar(layers, counts, color="tab:red", alpha=0.7)
        if region:
            ax2.axvspan(min(region) - 0.5, max(region) + 0.5, color="tab:green", alpha=0.12)
        ax2.set_xticks(layers)
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("bootstrap L*")
        ax2.set_ylabel("share of resamples")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_profiles(
    path: str | Path,
    layers: Sequence[int],
    causal: np.ndarray,
    one_minus_cka: np.ndarray,
    norm_ratio: np.ndarray,
    *,
    title: str,
) -> Path:
    """Causal curve beside the correlational profiles (layer 0 = conv front end)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(layers, causal, "o-")
    axes[0].set_title("causal: mean recovery", fontsize=9)
    depth = np.arange(len(one_minus_cka))
    axes[1].plot(depth, one_minus_cka, "o-", color="tab:orange")
    axes[1].set_title("1 - linear CKA(clean, corrupt)", fontsize=9)
    axes[2].plot(depth, norm_ratio, "o-", color="tab:purple")
    axes[2].set_title("mean norm ratio corrupt / clean", fontsize=9)
    for ax in axes:
        ax.set_xlabel("layer (0 = conv front end)")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
