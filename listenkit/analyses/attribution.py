"""Attribution patching of attention heads: every head's denoising effect from two
forward passes and one backward pass (AtP, Nanda 2023; AtP*, Kramar et al. 2024,
arXiv 2403.00745), then exact patching of the top candidates to verify.

A head's output is ``z``, its slice of the input of the attention output projection
(``encoder.head``: encoder self-attention; ``decoder.cross_head``: decoder
cross-attention). For a pair (clean, corrupt) the first-order estimate of patching
head ``(l, h)`` from the clean run into the corrupt one is

    s(l, h) = sum_{t, d in h} (z_clean - z_corrupt)[t, d] * dm/dz_corrupt[t, d]

(denoising sign; the gradient at the corrupt run, float32, through the real
openai-whisper modules, one backward pass for every head). Aggregated as E4 does:
``E(l, h) = sum_i s_i(l, h) / sum_i (m_clean_i - m_corrupt_i)`` over the pairs past
the signed floor.

- ``method="atp"``: ``s`` as above. The node is the head's output, so ``z_clean -
  z_corrupt`` comes from the two forward passes exactly: the head's own attention
  softmax is never linearised (AtP*'s QK fix, which recomputes the softmax for query
  and key contributions, holds by construction at this granularity; what is linear is
  the path from the head's output to the metric).
- ``method="atp*"``: GradDrop on top: for each layer ``l`` of the model (encoder and
  decoder blocks), a backward pass with the gradient through block ``l``'s sublayers
  zeroed (only the residual skips it); the score is the mean over ``l`` of ``|E_{-l}|``,
  which exposes effects that cancel between paths. A magnitude for screening.
- ``method="exact"``: ``head_sweep`` (one restarted forward pass per head).

``verify`` patches the top candidates and a random sample of the rest exactly and
reports recall@k, Spearman's rho and the largest effect seen outside the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from listenkit.analyses.effects import StimulusEffects
from listenkit.analyses.heads import COMPONENT, head_sweep, top_heads
from listenkit.analyses.listen_layer.patch_sweep import pair_items
from listenkit.engine.batch import Batch, PatchItem
from listenkit.engine.patching import Progress, run_patching
from listenkit.engine.sites import Site
from listenkit.models.speech_model import SpeechModel
from listenkit.stats import RatioOfMeans
from listenkit.stimuli.types import Pair

__all__ = [
    "METHODS",
    "HeadScores",
    "Verification",
    "head_scores",
    "screened_top_heads",
    "verify",
]

METHODS = ("exact", "atp", "atp*")


@dataclass(frozen=True, kw_only=True)
class HeadScores(StimulusEffects):
    """Per-pair head scores ``scores[d, i, l - 1, h]``: ``d = 0`` the estimate with every
    path open, ``d = 1..`` with block ``d``'s gradient dropped (``atp*`` only)."""

    stack: str
    method: str
    ids: tuple[str, ...]
    clean: np.ndarray  # [n]
    corrupt: np.ndarray  # [n]
    scores: np.ndarray  # [drops, n, layers, heads]
    floor: float

    def gaps(self) -> tuple[np.ndarray, ...]:
        return (self.clean - self.corrupt,)

    def ratio(self, rows: np.ndarray | None = None, *, drop: int = 0) -> RatioOfMeans:
        """``E(l, h)`` (flattened) with block ``drop``'s gradient dropped (0: none)."""
        keep = self.rows(rows)
        num = self.scores[drop][keep].reshape(len(keep), -1)
        return RatioOfMeans(num, (self.clean - self.corrupt)[keep])

    def effects(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``[layers, heads]``: the signed estimate (``exact``, ``atp``) or the GradDrop
        magnitude ``sum_l |E_{-l}| / (L - 1)`` over the L dropped blocks (``atp*``; a
        head's own block gives 0; the absolute value is taken of the pooled ratio)."""
        shape = self.scores.shape[2:]
        if self.method != "atp*":
            return self.ratio(rows).value().reshape(shape)
        drops = [np.abs(self.ratio(rows, drop=d).value()) for d in range(1, len(self.scores))]
        return (np.sum(drops, axis=0) / (len(drops) - 1)).reshape(shape)


def head_scores(
    model: SpeechModel,
    pairs: Sequence[Pair] | None = None,
    *,
    items: Sequence[PatchItem] | None = None,
    site: str = "encoder.head",
    method: str = "atp",
    metric: str = "ref_logprob",
    reference: str = "greedy",
    floor: float = 1.0,
    batch_size: int = 8,
    progress: Progress = False,
) -> HeadScores:
    """Every head's denoising effect at ``site`` on minimal ``pairs`` (or denoising
    ``items``) by ``method`` (``exact``, ``atp``, ``atp*``); see the module docstring."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    stack = {v: k for k, v in COMPONENT.items()}.get(site)
    if stack is None:
        raise ValueError(f"site must be one of {sorted(COMPONENT.values())}, got {site!r}")
    if (pairs is None) == (items is None):
        raise ValueError("pass pairs or items, not both")
    if items is None:
        items = pair_items(model, pairs, metric, reference=reference, batch_size=batch_size)
    if method == "exact":
        sweep = head_sweep(
            model, items=items, stack=stack, floor=floor, batch_size=batch_size, progress=progress
        )
        scores = (sweep.patched - sweep.corrupt[:, None, None])[None]
        return HeadScores(
            stack=stack,
            method=method,
            ids=sweep.ids,
            clean=sweep.clean,
            corrupt=sweep.corrupt,
            scores=scores,
            floor=float(floor),
        )
    parts = []
    report = progress if callable(progress) else None
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        parts.append(_attribute(model, Batch(model, chunk), stack, graddrop=method == "atp*"))
        if report is not None:
            report(start + len(chunk), len(items))
    return HeadScores(
        stack=stack,
        method=method,
        ids=tuple(it.id for it in items),
        clean=np.concatenate([p[0] for p in parts]),
        corrupt=np.concatenate([p[1] for p in parts]),
        scores=np.concatenate([p[2] for p in parts], axis=1),
        floor=float(floor),
    )


class _SkipBlock(torch.autograd.Function):
    """Forward: the block's output, unchanged. Backward: the gradient goes to the output
    (and through the block), or, while the switch is on, past the block to its input
    only (the block's residual update gets none)."""

    @staticmethod
    def forward(ctx, block_input, block_output, switch):
        ctx.switch = switch
        return block_output.view_as(block_output)

    @staticmethod
    def backward(ctx, grad):
        if ctx.switch[0]:
            return grad, torch.zeros_like(grad), None
        return None, grad, None


@contextmanager
def _droppable(blocks: Sequence[torch.nn.Module], switches: list[list[bool]]):
    """Route each block's output through ``_SkipBlock`` with its own switch: the forward
    values are unchanged, bit for bit."""
    handles = []
    for block, switch in zip(blocks, switches, strict=True):

        def hook(_module, args, output, switch=switch):
            return _SkipBlock.apply(args[0], output, switch)

        handles.append(block.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _head_inputs(projections: Sequence[torch.nn.Module], store: list):
    """Record the input ``z`` of every output projection (``autograd.grad`` takes the
    gradient with respect to these very tensors)."""
    handles = []
    for j, proj in enumerate(projections):

        def pre_hook(_module, args, j=j):
            store[j] = args[0]

        handles.append(proj.register_forward_pre_hook(pre_hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _metric(logits: torch.Tensor, rows: dict) -> torch.Tensor:
    """``m`` per item (differentiable): signed teacher-forced log-probs of the rows."""
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    picked = logprobs.gather(-1, rows["tokens"][:, 1:, None])[..., 0]
    per_row = (picked * rows["mask"].to(picked)).sum(dim=1)
    return torch.zeros(rows["n_items"], dtype=per_row.dtype).index_add(0, rows["owner"], per_row)


def _forward(module, mel, rows, projections, store, *, blocks=(), switches=()):
    with ExitStack() as stack:
        stack.enter_context(_head_inputs(projections, store))
        if blocks:
            stack.enter_context(_droppable(blocks, switches))
        features = module.encoder(mel)
        logits = module.decoder(rows["tokens"][:, :-1], features[rows["owner"]])
    return _metric(logits, rows)


def _attribute(model: SpeechModel, batch: Batch, stack: str, *, graddrop: bool):
    """``(m_clean [b], m_corrupt [b], scores [drops, b, layers, heads])`` for one batch."""
    module = model.module
    if stack == "encoder":
        projections = [b.attn.out for b in module.encoder.blocks]
        n_heads = model.heads
    else:
        if batch.source["lengths"] != batch.base["lengths"]:
            raise ValueError(
                "decoder heads need clean and corrupt rows of equal length at every position; "
                f"got {batch.source['lengths']} vs {batch.base['lengths']} (items {batch.ids})"
            )
        projections = [b.cross_attn.out for b in module.decoder.blocks]
        n_heads = module.dims.n_text_head
    clean_z: list = [None] * len(projections)
    corrupt_z: list = [None] * len(projections)
    with torch.inference_mode():
        m_clean = _forward(module, batch.mel_source, batch.source, projections, clean_z)
    # the blocks whose dropping can change a head's gradient: everything for encoder
    # heads, the decoder for cross-attention heads (the encoder is upstream of them)
    blocks = (
        [*module.decoder.blocks]
        if stack == "decoder"
        else [*module.encoder.blocks, *module.decoder.blocks]
    )
    blocks = blocks if graddrop else []
    switches = [[False] for _ in blocks]
    with torch.enable_grad():
        m_corrupt = _forward(
            module,
            batch.mel_base,
            batch.base,
            projections,
            corrupt_z,
            blocks=blocks,
            switches=switches,
        )
        total = m_corrupt.sum()
        drops = []
        for dropped in range(len(blocks) + 1):  # 0: nothing dropped
            for j, switch in enumerate(switches, start=1):
                switch[0] = j == dropped
            grads = torch.autograd.grad(total, corrupt_z, retain_graph=dropped < len(blocks))
            drops.append(_scores(clean_z, corrupt_z, grads, batch, stack, n_heads))
    return m_clean.double().numpy(), m_corrupt.detach().double().numpy(), np.stack(drops)


def _scores(clean_z, corrupt_z, grads, batch, stack, n_heads) -> np.ndarray:
    """``[items, layers, heads]``: sum over positions and the head's dims of Δz * grad."""
    out = []
    for clean, corrupt, grad in zip(clean_z, corrupt_z, grads, strict=True):
        product = (clean - corrupt.detach()) * grad  # [rows or items, T, d]
        per_head = product.reshape(*product.shape[:2], n_heads, -1).sum(dim=(1, 3))
        if stack == "decoder":  # rows -> items
            owner = batch.base["owner"]
            per_head = torch.zeros(batch.base["n_items"], n_heads).index_add(0, owner, per_head)
        out.append(per_head.double().numpy())
    return np.stack(out, axis=1)


@dataclass(frozen=True, kw_only=True)
class Verification:
    """Exact single-head effects of the screen's top candidates and of a random sample
    of the other heads, against the screen's scores."""

    checked: list  # [(layer, head)]: the top candidates, then the sample
    n_top: int
    exact: np.ndarray  # [len(checked)] exact E(l, h)
    screened: np.ndarray  # [len(checked)] the screen's scores
    recall: dict  # k -> recall@k among the checked heads (k < n_top only)
    spearman: float  # rank correlation of screen and exact over the checked heads
    sample_max_abs: float  # the largest |exact effect| in the random sample (NaN: none)
    deltas: np.ndarray  # [pairs past the floor, len(checked)] m(patched) - m_corrupt
    gap: np.ndarray  # [pairs past the floor] m_clean - m_corrupt

    def resampled_top(self, k: int, weights: np.ndarray) -> list[list[tuple[int, int]]]:
        """The top ``k`` of the checked heads in each bootstrap resample (``weights``:
        ``[B, pairs]`` counts), by the exact ratio of means ``w @ deltas / w @ gap``."""
        effects = (weights @ self.deltas) / (weights @ self.gap)[:, None]
        order = np.argsort(-effects, axis=1, kind="stable")[:, :k]
        return [[tuple(self.checked[i]) for i in row] for row in order]

    def top(self, k: int) -> list[tuple[int, int]]:
        """The ``k`` heads with the largest exact effect among the checked ones."""
        order = np.argsort(-self.exact, kind="stable")[:k]
        return [tuple(self.checked[i]) for i in order]


def verify(
    model: SpeechModel,
    items: Sequence[PatchItem],
    scores: np.ndarray,
    *,
    stack: str = "encoder",
    n_top: int,
    n_random: int = 0,
    rng: np.random.Generator | None = None,
    magnitude: bool = False,
    ks: Sequence[int] = (5, 10),
    floor: float = 1.0,
    batch_size: int = 8,
    progress: Progress = False,
) -> Verification:
    """Patch exactly the ``n_top`` heads with the largest ``scores`` (``[layers, heads]``,
    e.g. ``HeadScores.effects()``) and ``n_random`` others drawn by ``rng``.

    Among the checked heads: recall@k (k < ``n_top``) is the share of the exact top-k
    that the screen ranks in its top-k, Spearman's rho compares the two rankings (both
    on the selected heads, so neither describes the whole population), and
    ``sample_max_abs`` is the largest |effect| in the random sample: a sample maximum
    (it catches one missed head with probability ``n_random / #rest``), not a bound.
    ``magnitude``: the scores are magnitudes (``atp*``), compared with |exact|."""
    from scipy.stats import spearmanr

    scores = np.asarray(scores, dtype=np.float64)
    top = top_heads(scores, min(n_top, scores.size))
    rest = [(layer + 1, h) for layer in range(scores.shape[0]) for h in range(scores.shape[1])
            if (layer + 1, h) not in top]  # fmt: skip
    sample = []
    if n_random and rest:
        generator = rng if rng is not None else np.random.default_rng(0)
        picks = generator.choice(len(rest), size=min(n_random, len(rest)), replace=False)
        sample = [rest[i] for i in sorted(picks)]
    checked = [*top, *sample]
    sites = [Site(component=COMPONENT[stack], layer=layer, heads=(h,)) for layer, h in checked]
    results = run_patching(model, items, sites, batch_size=batch_size, progress=progress)
    gap = results[0].source - results[0].base
    keep = gap >= floor
    if not keep.any():
        raise ValueError(f"no pair passes the signed floor (m_clean - m_corrupt >= {floor} nats)")
    deltas = np.stack([r.patched[keep, 0] - r.base[keep] for r in results], axis=1)
    exact = deltas.sum(axis=0) / gap[keep].sum()
    screened = np.array([scores[layer - 1, h] for layer, h in checked])
    truth = np.abs(exact) if magnitude else exact
    recall = {}
    for k in ks:
        if k < len(top):
            exact_top = set(np.argsort(-truth, kind="stable")[:k])
            screen_top = set(np.argsort(-screened, kind="stable")[:k])
            recall[k] = len(exact_top & screen_top) / k
    rho = float(spearmanr(screened, truth).statistic) if len(checked) > 2 else float("nan")
    sample_max = float(np.abs(exact[len(top) :]).max()) if sample else float("nan")
    return Verification(checked=checked, n_top=len(top), exact=exact, screened=screened,
                        recall=recall, spearman=rho, sample_max_abs=sample_max,
                        deltas=deltas, gap=gap[keep])  # fmt: skip


def screened_top_heads(
    model: SpeechModel,
    items: Sequence[PatchItem],
    k: int,
    *,
    stack: str = "encoder",
    method: str = "atp",
    verify_top: int | None = None,
    floor: float = 1.0,
    batch_size: int = 8,
) -> tuple[list[tuple[int, int]], HeadScores, Verification]:
    """Screen, then verify: ``method`` scores every head, the ``verify_top`` (default
    ``2k``) best are patched exactly, and the top ``k`` are chosen on the exact values.
    Only the choice uses the screen; every effect reported for a chosen head is exact."""
    scores = head_scores(
        model, items=items, site=COMPONENT[stack], method=method, floor=floor, batch_size=batch_size
    )
    if verify_top is not None and verify_top < k:
        raise ValueError(f"verify_top must be >= k = {k}, got {verify_top}")
    check = verify(
        model,
        items,
        scores.effects(),
        stack=stack,
        n_top=verify_top or 2 * k,
        magnitude=method == "atp*",
        floor=floor,
        batch_size=batch_size,
    )
    return check.top(k), scores, check
