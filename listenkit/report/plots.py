"""Evidence plots (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from listenkit.stats import Curve
from listenkit.stats.grounding import GroundingCurves

__all__ = ["plot_grounding", "plot_heads", "plot_layer_claim", "plot_profiles", "plot_shift"]


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
    per_stimulus: np.ndarray | None = None,
) -> Path:
    """Curve with CI band, claimed region shaded, L* marked; histogram of bootstrap L*.
    ``per_stimulus`` ([stimuli, layers]) is drawn as faint lines behind the curve (the
    y range follows their 5-95% quantiles, so a few extreme stimuli do not flatten it)."""
    panels = 2 if l_star_samples is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    layers = np.asarray(curve.layers)
    if region:
        lo, hi = min(region), max(region)
        ax.axvspan(lo - 0.5, hi + 0.5, color="tab:green", alpha=0.12, label="claimed region")
    if per_stimulus is not None and len(per_stimulus):
        per_stimulus = np.asarray(per_stimulus, dtype=float)
        ax.plot(layers, per_stimulus.T, color="grey", alpha=0.15, lw=0.6)
        ax.plot([], [], color="grey", alpha=0.5, lw=0.6, label="per stimulus")
        lo = min(np.quantile(per_stimulus, 0.05), float(np.min(curve.low)))
        hi = max(np.quantile(per_stimulus, 0.95), float(np.max(curve.high)))
        pad = 0.1 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    ax.fill_between(layers, curve.low, curve.high, color="tab:blue", alpha=0.25, label="95% CI")
    ax.plot(layers, curve.mean, "o-", color="tab:blue", label="E(l)")
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
        _peak_histogram(axes[0, 1], layers, l_star_samples, region, "bootstrap L*")
    return _save(fig, path)


def _peak_histogram(ax, layers, samples: np.ndarray, region, xlabel: str) -> None:
    """Share of bootstrap resamples whose peak is each layer, claimed region shaded."""
    ax.bar(layers, [np.mean(samples == layer) for layer in layers], color="tab:red", alpha=0.7)
    if region:
        ax.axvspan(min(region) - 0.5, max(region) + 0.5, color="tab:green", alpha=0.12)
    ax.set_xticks(layers)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of resamples")


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


def plot_grounding(
    path: str | Path,
    curves: GroundingCurves,
    *,
    title: str,
    region: Collection[int] | None = None,
    l_star_samples: np.ndarray | None = None,
    note: str | None = None,
) -> Path:
    """dA and dT with CI bands; gc with its CI where defined (undefined layers marked
    with an x on the axis, never drawn as a number); optional histogram of bootstrap l*."""
    panels = 3 if l_star_samples is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 3.6), squeeze=False)
    layers = np.asarray(curves.layers)
    ax = axes[0, 0]
    for name, mean, low, high, colour in (
        ("dA (audio stream)", curves.da_mean, curves.da_low, curves.da_high, "tab:blue"),
        ("dT (text stream)", curves.dt_mean, curves.dt_low, curves.dt_high, "tab:orange"),
    ):
        ax.fill_between(layers, low, high, color=colour, alpha=0.2)
        ax.plot(layers, mean, "o-", color=colour, label=name)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("layer (from 1)")
    ax.set_ylabel("share of the effect restored")
    ax.set_xticks(layers)
    ax.legend(fontsize=7)
    ax.set_title(f"n = {curves.n}", fontsize=9)
    ax = axes[0, 1]
    if region:
        ax.axvspan(min(region) - 0.5, max(region) + 0.5, color="tab:green", alpha=0.12,
                   label="claimed region")  # fmt: skip
    defined = np.isfinite(curves.gc)
    gc = np.where(defined, curves.gc, np.nan)  # NaN breaks the line: no value is drawn
    ax.fill_between(layers, curves.gc_low, curves.gc_high, where=defined, color="tab:purple",
                    alpha=0.25, label="95% CI")  # fmt: skip
    ax.plot(layers, gc, "o-", color="tab:purple", label="gc")
    if (~defined).any():
        ax.plot(layers[~defined], np.zeros((~defined).sum()), "x", color="black", ms=9,
                label="undefined (denominator < min)")  # fmt: skip
    if curves.l_star:
        ax.axvline(curves.l_star, color="tab:red", ls=":", label=f"l* = {curves.l_star}")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (from 1)")
    ax.set_ylabel("grounding coefficient")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="best")
    if note:
        ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=6, color="grey")
    if l_star_samples is not None:
        _peak_histogram(axes[0, 2], layers, l_star_samples, region, "bootstrap l*_gc")
    return _save(fig, path)


def plot_heads(
    path: str | Path,
    effects: np.ndarray,
    *,
    title: str,
    marked: Collection[tuple[int, int]] = (),
    outlined: Collection[tuple[int, int]] = (),
    null: np.ndarray | None = None,
    observed: float | None = None,
    null_label: str = "random 5-head sets",
    statistic: str = "statistic on half B",
) -> Path:
    """Heatmap of single-head effects (layers from 1 x heads from 0), ``marked`` heads
    (the top-k, x) and ``outlined`` ones (e.g. OpenAI's alignment heads, squares); with
    ``null``, a second panel: the random-set distribution and the chosen set's value."""
    effects = np.asarray(effects, dtype=float)
    panels = 2 if null is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 3.8), squeeze=False)
    ax = axes[0, 0]
    bound = float(np.nanmax(np.abs(effects))) or 1.0
    image = ax.imshow(effects, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    fig.colorbar(image, ax=ax, label="E(l, h), ratio of means")
    n_layers, n_heads = effects.shape
    ax.set_yticks(range(n_layers), [str(layer) for layer in range(1, n_layers + 1)])
    ax.set_xticks(range(n_heads))
    ax.set_ylabel("layer (from 1)")
    ax.set_xlabel("head (from 0)")
    if effects.size <= 128:  # each cell's value, legible where the colour scale is not
        for (row, head), value in np.ndenumerate(effects):
            ink = "white" if abs(value) > 0.6 * bound else "black"
            ax.text(head, row + 0.3, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color=ink)  # fmt: skip
    for layer, head in marked:
        ax.plot(head, layer - 1.1, "kx", markersize=8, mew=2)
    for layer, head in outlined:
        ax.add_patch(plt.Rectangle((head - 0.5, layer - 1.5), 1, 1, fill=False, ec="gold", lw=2))
    fig.suptitle(textwrap.fill(title, 60 * panels + 20), fontsize=9)
    if null is not None:
        ax2 = axes[0, 1]
        ax2.hist(null, bins=20, color="grey", alpha=0.7, label=null_label)
        if observed is not None:
            ax2.axvline(observed, color="tab:red", lw=2, label="top-5 (chosen on half A)")
        ax2.set_xlabel(statistic)
        ax2.set_ylabel("random sets")
        ax2.legend(fontsize=7)
    return _save(fig, path)


def plot_shift(
    path: str | Path,
    before: Curve,
    after: Curve,
    *,
    delta_samples: np.ndarray,
    training: dict[str, dict],
    title: str,
    ylabel: str,
    secondary: dict[str, dict[str, list[float]]] | None = None,
    null_samples: np.ndarray | None = None,
) -> Path:
    """E3: before/after curves with CIs; the bootstrap distribution of Delta (CoM shift);
    with ``null_samples`` the readout null's draws beside it; the training curves (loss
    per step, validation metric); with ``secondary``
    (analysis -> {"before": per layer, "after": per layer}) a fourth panel of the
    layer analyses."""
    panels = 4 if secondary else 3
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8))
    ax = axes[0]
    for name, curve, colour in (("before", before, "tab:blue"), ("after", after, "tab:orange")):
        layers = np.asarray(curve.layers)
        ax.fill_between(layers, curve.low, curve.high, color=colour, alpha=0.2)
        ax.plot(layers, curve.mean, "o-", color=colour, label=f"{name} (95% CI)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(np.asarray(before.layers))
    ax.set_xlabel("encoder layer (from 1)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    finite = np.asarray(delta_samples)[np.isfinite(delta_samples)]
    ax.hist(finite, bins=40, color="tab:purple", alpha=0.7, label="Delta (resampled)")
    if null_samples is not None:
        null = np.asarray(null_samples)[np.isfinite(null_samples)]
        ax.hist(null, bins=40, color="tab:grey", alpha=0.5, label="readout null")
        ax.legend(fontsize=7)
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel("bootstrap Delta = CoM_after - CoM_before (relative depth)")
    ax.set_ylabel("resamples")
    ax.set_title(f"P(Delta > 0) = {np.mean(np.nan_to_num(delta_samples) > 0):.3f}", fontsize=9)
    ax = axes[2]
    twin = ax.twinx()
    for name, log in training.items():
        (line,) = ax.plot(np.arange(1, len(log["loss"]) + 1), log["loss"], lw=1,
                          label=f"{name}: training loss")  # fmt: skip
        if log["validation"]:
            steps, values = zip(*log["validation"], strict=True)
            twin.plot(steps, values, "o--", color=line.get_color(), alpha=0.8,
                      label=f"{name}: {log['metric']}")  # fmt: skip
    twin.set_ylabel("validation metric (dashed)", fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7, loc="upper right")
    if secondary:
        ax = axes[3]
        for (name, values), style in zip(secondary.items(), ("o", "s", "^"), strict=False):
            for when, ls in (("before", "-"), ("after", "--")):
                if when in values:
                    layers = np.arange(1, len(values[when]) + 1)
                    ax.plot(layers, values[when], marker=style, ls=ls, label=f"{name} ({when})")
        ax.set_xticks(np.asarray(before.layers))
        ax.set_xlabel("encoder layer (from 1)")
        ax.set_ylabel("value per layer")
        ax.set_title("layer analyses before (solid) vs after (dashed)", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)
