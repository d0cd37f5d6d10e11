"""The evidence plots render (PNG written) from representative inputs."""

from __future__ import annotations

import numpy as np

from listenkit.report.plots import plot_shift
from listenkit.stats import bootstrap_curve


def test_shift_plot_has_curves_delta_training_and_layer_analyses(tmp_path):
    rng = np.random.default_rng(0)
    curves = [bootstrap_curve(rng.normal(m, 0.1, (12, 4)), (1, 2, 3, 4), rng=rng,
                              n_resamples=200) for m in (0.3, 0.5)]  # fmt: skip
    log = {"loss": [1.4, 1.0, 0.6], "validation": [[0, 0.25], [3, 0.9]], "metric": "accuracy"}
    path = plot_shift(
        tmp_path / "plot.png", *curves, delta_samples=rng.normal(0.02, 0.01, 500),
        training={"lora": log, "frozen": log}, title="C4", ylabel="E(l)",
        secondary={"logit_lens_accuracy": {"before": [0.2, 0.4, 0.4, 0.8],
                                           "after": [0.2, 0.4, 0.8, 0.9]}},
    )  # fmt: skip
    assert path.read_bytes()[:4] == b"\x89PNG"
