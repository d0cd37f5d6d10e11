"""Attribution patching of heads (AtP, AtP*) against exact patching, on planted heads."""

from __future__ import annotations

import numpy as np
import pytest

from listenkit.analyses.attribution import head_scores, verify
from listenkit.analyses.heads import top_heads
from listenkit.analyses.listen_layer.patch_sweep import pair_items
from listenkit.planted.encoder import planted_pairs
from listenkit.planted.heads import listen_heads, planted_head_model
from listenkit.stimuli.types import Pair, Utterance


@pytest.fixture(scope="module")
def five():
    return planted_head_model("five")


def _scaled(pairs, eps: float) -> list[Pair]:
    """The same pairs with the corruption scaled by ``eps`` (a small, linear-regime one)."""
    return [
        Pair(
            id=p.id,
            attribute=p.attribute,
            clean=p.clean,
            corrupt=Utterance(
                id=p.corrupt.id,
                text=p.corrupt.text,
                audio=p.clean.audio + eps * (p.corrupt.audio - p.clean.audio),
            ),
        )
        for p in pairs
    ]


def test_atp_is_exact_to_first_order(five):
    """Per pair and head, the first-order estimate equals the exact patching effect as
    the corruption shrinks (gradient, sign and head slices are right): relative error
    .17 at 1% of the planted corruption, .001 at 0.1% (this model's metric is far from
    linear at full strength: a 1,000-nat gap)."""
    errors = []
    for eps in (1e-2, 1e-3):
        items = pair_items(five, _scaled(planted_pairs(2, 2), eps), "ref_logprob")
        exact = head_scores(five, items=items, method="exact", floor=1e-9).scores[0]
        atp = head_scores(five, items=items, method="atp", floor=1e-9).scores[0]
        errors.append(np.abs(atp - exact).max() / np.abs(exact).max())
    assert errors[1] < 0.01 and errors[1] < errors[0] / 10, errors


@pytest.mark.parametrize("method", ["atp", "atp*"])
def test_the_screen_finds_the_planted_heads_and_verification_confirms_them(five, method):
    items = pair_items(five, planted_pairs(3, 6), "ref_logprob")
    scores = head_scores(five, items=items, method=method)
    planted = set(listen_heads("five", 3))
    assert set(top_heads(scores.effects(), 5)) == planted
    check = verify(
        five, items, scores.effects(), n_top=10, n_random=8, rng=np.random.default_rng(0)
    )
    assert set(check.top(5)) == planted
    assert check.recall[5] == 1.0
    assert check.sample_max_abs < 0.05  # nothing outside the screen's top 10 listens


def test_graddrop_scores_are_magnitudes_and_exact_keeps_its_sign(five):
    items = pair_items(five, planted_pairs(3, 4), "ref_logprob")
    star = head_scores(five, items=items, method="atp*")
    assert star.scores.shape[0] == 1 + 4 + 1  # none dropped, then each of 4 + 1 blocks
    assert (star.effects() >= 0).all()
    plain = head_scores(five, items=items, method="atp")
    np.testing.assert_array_equal(star.scores[0], plain.scores[0])  # the forward is unchanged


def test_bad_requests_are_refused(five):
    with pytest.raises(ValueError, match="unknown method"):
        head_scores(five, planted_pairs(2, 1), method="magic")
    with pytest.raises(ValueError, match="site must be"):
        head_scores(five, planted_pairs(2, 1), site="encoder.attn_out")
    with pytest.raises(ValueError, match="pairs or items"):
        head_scores(five)


def test_screen_then_verify_returns_the_exact_top_heads(five):
    from listenkit.analyses.attribution import screened_top_heads

    items = pair_items(five, planted_pairs(2, 4), "ref_logprob")
    top, _, check = screened_top_heads(five, items, 5)
    assert set(top) == set(listen_heads("five", 2))
    assert check.n_top == 10 and len(check.exact) == 10  # 2k heads patched, not 32


def test_sequential_set_test_run_to_the_end_equals_the_full_test(five):
    """With h above R the sequential test evaluates every set and gives the full-R rank
    p; with h = 1 on a set no better than random it stops at the first set reaching it."""
    from listenkit.analyses.head_set_tests import sequential_head_set_test
    from listenkit.analyses.heads import head_set_recovery, random_head_sets

    items = pair_items(five, planted_pairs(2, 3), "ref_logprob")
    sets = random_head_sets(4, 8, 5, 6, np.random.default_rng(1))
    chosen = tuple(sorted(listen_heads("five", 2)))
    full = head_set_recovery(five, items, chosen, sets)
    seq = sequential_head_set_test(five, items, chosen, sets, statistic="recovery", h=100, chunk=4)
    assert seq.p_value == full["p_value"] and seq.n_evaluated == 6
    np.testing.assert_allclose(seq.null, full["null"])
    weak = ((1, 1), (1, 2), (3, 1), (4, 0), (4, 4))  # no planted head for C_2
    early = sequential_head_set_test(five, items, weak, sets, statistic="recovery", h=1, chunk=2)
    assert early.stopped_early and early.n_evaluated < 6


def _random_whisper():
    """A small random Whisper (2 + 2 layers, 4 heads): every path, nothing planted."""
    import torch
    import whisper

    dims = whisper.model.ModelDimensions(
        n_mels=8, n_audio_ctx=6, n_audio_state=16, n_audio_head=4, n_audio_layer=2,
        n_vocab=30, n_text_ctx=8, n_text_state=16, n_text_head=4, n_text_layer=2,
    )  # fmt: skip
    torch.manual_seed(0)
    module = whisper.model.Whisper(dims)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module.eval()


def _rows(torch, tokens, owner, mask):
    return {"tokens": torch.tensor(tokens), "owner": torch.tensor(owner),
            "mask": torch.tensor(mask, dtype=torch.float64), "n_items": 2,
            "lengths": [len(t) for t in tokens]}  # fmt: skip


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_both_sites_are_exact_to_first_order_with_several_rows_per_item(stack):
    """Against exact patching of every head on a random model, with items of two signed
    rows and one row, the rows not sorted by item: slices, signs and the row-to-item
    sum are right at both sites; GradDrop zeroes a head's own block only."""
    import types

    import torch

    from listenkit.analyses.attribution import _attribute, _metric

    module = _random_whisper()
    rows = _rows(torch, [[1, 2, 3, 4], [5, 6, 7, 8], [1, 9, 3, 0]], [0, 1, 0],
                 [[0, 1, 1], [0, 1, 1], [0, -1, -1]])  # fmt: skip
    clean = torch.randn(2, 8, 12)
    corrupt = clean + 0.05 * torch.randn(2, 8, 12)
    batch = types.SimpleNamespace(mel_source=clean, mel_base=corrupt, source=rows, base=rows,
                                  ids=["a", "b"])  # fmt: skip
    model = types.SimpleNamespace(module=module, heads=4)
    blocks = module.encoder.blocks if stack == "encoder" else module.decoder.blocks
    out = [b.attn.out if stack == "encoder" else b.cross_attn.out for b in blocks]

    def metric(mel, patch=None):
        handles = []
        if patch is not None:
            layer, head, value = patch

            def replace(_m, args):
                z = args[0].clone()
                z[..., head * 4 : (head + 1) * 4] = value[..., head * 4 : (head + 1) * 4]
                return (z,)

            handles.append(out[layer].register_forward_pre_hook(replace))
        zs = {}
        handles += [o.register_forward_pre_hook(lambda _m, a, j=j: zs.__setitem__(j, a[0]))
                    for j, o in enumerate(out)]  # fmt: skip
        with torch.no_grad():
            logits = module.decoder(rows["tokens"][:, :-1], module.encoder(mel)[rows["owner"]])
        for h in handles:
            h.remove()
        return _metric(logits, rows).numpy(), zs

    base, _ = metric(corrupt)
    _, clean_z = metric(clean)
    exact = np.zeros((2, 2, 4))
    for layer in range(2):
        for head in range(4):
            exact[:, layer, head] = metric(corrupt, (layer, head, clean_z[layer]))[0] - base
    _, m_corrupt, scores = _attribute(model, batch, stack, graddrop=True)
    np.testing.assert_allclose(m_corrupt, base, rtol=1e-6)
    assert np.abs(scores[0] - exact).max() < 0.02 * np.abs(exact).max()
    assert scores.shape[0] == 1 + (4 if stack == "encoder" else 2)  # encoder heads: 2 + 2
    for layer in (1, 2):
        assert (scores[layer][:, layer - 1] == 0).all()  # a head's own block dropped: 0
    np.testing.assert_allclose(scores[1][:, 1], scores[0][:, 1], rtol=1e-5)  # upstream: same
    assert not np.allclose(scores[2][:, 0], scores[0][:, 0])  # downstream: changes
