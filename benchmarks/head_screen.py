"""Screening heads by attribution patching vs patching every head exactly, same pairs.

    python benchmarks/head_screen.py [--model whisper-base] [--pairs 16] [--threads 2]

For both head sites (encoder self-attention heads, decoder cross-attention heads), on
held-out noise pairs (the last sentences of the text bank: not in any claim's set):
``exact`` patches every head (one restarted run per head), ``atp`` is one backward pass
(``listenkit.analyses.attribution``), ``atp*`` adds GradDrop (one backward pass per
block). Prints each one's time and its ratio to exact, Spearman's rho against the exact
effects, recall@5 and @10 (the share of the exact top-k the screen ranks in its top-k),
whether screening then verifying the top 2k exactly returns the exact top-5, the largest
|exact effect| among 8 random heads outside the screen's top 2k (a sample maximum), and
the time of screening plus that verification against exact.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import model_from_args, warm_up
from scipy.stats import spearmanr

from listenkit.analyses.attribution import head_scores, verify
from listenkit.analyses.heads import top_heads
from listenkit.analyses.listen_layer.patch_sweep import pair_items
from listenkit.stimuli import noise_pairs, textbank

K = 5


def recall(screen: np.ndarray, exact: np.ndarray, k: int) -> float:
    return len(set(top_heads(screen, k)) & set(top_heads(exact, k))) / k


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=16)
    args, model = model_from_args(parser)
    texts = textbank()[-args.pairs :]
    pairs = list(noise_pairs(texts, 0.0, "white", seed=20260226))
    warm_up(model, pairs[0].clean.audio)
    items = pair_items(model, pairs, "ref_logprob", reference="greedy")
    print(f"model {args.model}, {len(pairs)} held-out noise pairs (0 dB), {args.threads} threads")
    for site in ("encoder.head", "decoder.cross_head"):
        results = {}
        for method in ("exact", "atp", "atp*"):
            start = time.perf_counter()
            results[method] = head_scores(model, items=items, site=site, method=method)
            results[method] = (results[method], time.perf_counter() - start)
        exact, t_exact = results["exact"]
        truth = exact.effects()
        print(f"\n{site}: {truth.size} heads, {int(exact.included.sum())} pairs past the floor")
        print(
            f"  {'method':6s} {'time':>8s} {'x faster':>9s} {'rho':>6s} {'r@5':>5s} {'r@10':>5s}"
            f" {'top-5 via 2k':>13s} {'sample max':>11s} {'+verify':>8s} {'x faster':>9s}"
        )
        for method in ("atp", "atp*"):
            scores, seconds = results[method]
            screen = scores.effects()
            rank_truth = np.abs(truth) if method == "atp*" else truth  # atp* is a magnitude
            rho = spearmanr(screen.ravel(), rank_truth.ravel()).statistic
            start = time.perf_counter()
            check = verify(
                model,
                items,
                screen,
                stack=exact.stack,
                n_top=2 * K,
                n_random=8,
                rng=np.random.default_rng(0),
                magnitude=method == "atp*",
            )
            both = seconds + time.perf_counter() - start  # screen + exact on 2k + 8 heads
            found = set(check.top(K)) == set(top_heads(truth, K))
            print(
                f"  {method:6s} {seconds:7.1f}s {t_exact / seconds:8.1f}x {rho:6.2f} "
                f"{recall(screen, rank_truth, 5):5.2f} {recall(screen, rank_truth, 10):5.2f} "
                f"{found!s:>13s} {check.sample_max_abs:11.3f} {both:7.1f}s {t_exact / both:8.1f}x"
            )
        print(f"  exact  {t_exact:7.1f}s")


if __name__ == "__main__":
    main()
