"""E4 machinery: head sites patch exactly their slice, head sets across layers, mean
ablation, the statistics, and OpenAI's alignment heads decoded like openai-whisper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from listenkit import Site, sweep
from listenkit.analyses.heads import head_set_knockout, head_sweep, random_head_sets, top_heads
from listenkit.analyses.listen_layer.patch_sweep import pair_items, sweep_items
from listenkit.engine.head_sets import run_head_sets
from listenkit.models.alignment_heads import alignment_heads, alignment_mask
from listenkit.stats import hypergeometric_overlap, rank_p_value
from listenkit.stimuli import noise_pairs, textbank


@pytest.fixture(scope="module")
def pairs():
    return list(noise_pairs(textbank()[:2], 0.0, "white", seed=20260226))


def test_all_heads_of_a_layer_are_the_attention_output(tiny_model, pairs):
    """z patched in every head = attn.out's input patched = attn_out patched (same bias)."""
    heads = tuple(range(tiny_model.heads))
    items = pair_items(tiny_model, pairs)
    whole, every_head = sweep_items(
        tiny_model, items, ["encoder.attn_out", Site(component="encoder.head", heads=heads)],
        "ref_logprob", reference="greedy", progress=False,
    )  # fmt: skip
    np.testing.assert_allclose(every_head.patched, whole.patched, atol=1e-4)
    cross, cross_heads = sweep_items(
        tiny_model, items,
        ["decoder.cross_attn_out", Site(component="decoder.cross_head", heads=heads)],
        "ref_logprob", reference="greedy", progress=False,
    )  # fmt: skip
    np.testing.assert_allclose(cross_heads.patched, cross.patched, atol=1e-4)


def test_single_head_sweep_and_sets_agree_with_the_layer_sweep(tiny_model, pairs):
    result = head_sweep(tiny_model, pairs, progress=False)
    assert result.patched.shape == (2, tiny_model.encoder_layers, tiny_model.heads)
    items = pair_items(tiny_model, pairs)
    whole_layer = tuple((2, h) for h in range(tiny_model.heads))
    one_head = ((3, 1),)
    _, base, patched = run_head_sets(tiny_model, items, [whole_layer, one_head])
    attn = sweep(tiny_model, pairs, "encoder.attn_out", layers=[2], progress=False)
    np.testing.assert_allclose(patched[:, 0], attn.patched[:, 0], atol=1e-4)
    np.testing.assert_allclose(patched[:, 1], result.patched[:, 2, 1], atol=1e-4)
    np.testing.assert_allclose(base, result.corrupt, atol=1e-6)


def test_a_set_across_two_layers_matches_a_hand_written_patch(tiny_model, pairs):
    """(1, 0) and (3, 2) patched together, written with plain hooks and a full forward."""
    items = pair_items(tiny_model, pairs[:1])
    _, _, patched = run_head_sets(tiny_model, items, [((1, 0), (3, 2))])
    module, width = tiny_model.module, tiny_model.d_model // tiny_model.heads
    blocks = module.encoder.blocks
    store = {}
    handles = [
        blocks[i].attn.out.register_forward_pre_hook(
            lambda m, a, i=i: store.__setitem__(i, a[0].clone())
        )
        for i in (0, 2)
    ]
    with torch.inference_mode():
        module.encoder(tiny_model.log_mel([pairs[0].clean.audio]))
    for h in handles:
        h.remove()

    def swap(i, head):
        def pre(m, args):
            z = args[0].clone()
            z[..., head * width : (head + 1) * width] = store[i][
                ..., head * width : (head + 1) * width
            ]
            return (z,)

        return blocks[i].attn.out.register_forward_pre_hook(pre)

    handles = [swap(0, 0), swap(2, 2)]
    transcript = items[0].base.rows[0]
    with torch.inference_mode():
        features = module.encoder(tiny_model.log_mel([pairs[0].corrupt.audio]))
    for h in handles:
        h.remove()
    tokens = torch.tensor([transcript.tokens])
    with torch.inference_mode():
        logprobs = torch.log_softmax(module.decoder(tokens[:, :-1], features).double(), -1)[0]
    picked = logprobs[torch.arange(tokens.shape[1] - 1), tokens[0, 1:]]
    expected = float(picked[transcript.start - 1 :].sum())
    assert patched[0, 0] == pytest.approx(expected, abs=2e-3)


def test_mean_ablation_with_one_reference_run_changes_nothing(tiny_model, pairs):
    items = pair_items(tiny_model, pairs[:1])
    result = head_set_knockout(tiny_model, items, ((2, 0), (4, 5)), [((1, 1),)])
    assert result["observed"] == pytest.approx(0.0, abs=1e-6)  # the mean of one run is it


def test_top_heads_random_sets_and_rank_p():
    effects = np.array([[0.1, 0.5], [0.5, 0.2], [0.0, 0.9]])
    assert top_heads(effects, 3) == [(3, 1), (1, 1), (2, 0)]  # tie .5: the lower layer first
    sets = random_head_sets(3, 2, 5, 50, np.random.default_rng(0))
    assert all(len(set(s)) == 5 for s in sets)
    assert {h for s in sets for h in s} == {(layer, h) for layer in (1, 2, 3) for h in (0, 1)}
    assert rank_p_value(1.0, [0.1, 0.2, 1.0]) == pytest.approx(2 / 4)
    assert rank_p_value(2.0, np.zeros(100)) == pytest.approx(1 / 101)
    # ties within tie_rtol x |observed| below the observed value count as >=
    assert rank_p_value(1.0, [0.99995, 0.5]) == pytest.approx(1 / 3)
    assert rank_p_value(1.0, [0.99995, 0.5], tie_rtol=1e-4) == pytest.approx(2 / 3)
    assert rank_p_value(-2.0, [-2.0001, -3.0], tie_rtol=1e-4) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="tie_rtol"):
        rank_p_value(1.0, [0.5], tie_rtol=-1.0)


def test_hypergeometric_overlap_against_a_hand_computation():
    # 5 of 24 heads drawn, 6 of them at L*: P(X >= 3) by counting
    expected = sum(math.comb(6, x) * math.comb(18, 5 - x) for x in range(3, 6)) / math.comb(24, 5)
    assert hypergeometric_overlap(3, 24, 6, 5) == pytest.approx(expected)
    assert hypergeometric_overlap(0, 24, 6, 5) == pytest.approx(1.0)


@pytest.mark.parametrize(("name", "layers", "heads"), [("whisper-tiny.en", 4, 6),
                                                       ("whisper-base", 6, 8)])  # fmt: skip
def test_alignment_heads_decode_like_openai_whisper(name, layers, heads):
    import whisper

    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=10, n_audio_state=8, n_audio_head=1, n_audio_layer=1,
        n_vocab=51865, n_text_ctx=10, n_text_state=8, n_text_head=heads, n_text_layer=layers,
    )  # fmt: skip
    reference = whisper.model.Whisper(dims)
    reference.set_alignment_heads(whisper._ALIGNMENT_HEADS[name.removeprefix("whisper-")])
    grid = reference.alignment_heads.indices().T.tolist()
    expected = [(int(layer) + 1, int(head)) for layer, head in grid]
    assert alignment_heads(name, layers, heads) == expected
    assert alignment_mask(name, layers, heads).sum() == len(expected)
    with pytest.raises(ValueError, match="wrong checkpoint"):
        alignment_mask(name, layers + 1, heads)
    with pytest.raises(KeyError, match="no alignment heads"):
        alignment_mask("whisper-nonexistent", layers, heads)


@pytest.mark.parametrize(
    ("kind", "k", "supported"), [("one", 2, True), ("five", 3, True), ("spread", 2, False)]
)
def test_planted_listen_heads_are_found_and_tested_against_random_sets(kind, k, supported):
    """Planted truth for C6-sufficient: one known listen head, a known five-head circuit
    (the top 5 are found on half A and beat R = 20 random sets on half B) and an effect
    spread evenly over all 32 heads (not called a circuit: equal effects are ties)."""
    from listenkit.analyses.heads import head_set_recovery
    from listenkit.planted.encoder import N_LAYERS, planted_pairs
    from listenkit.planted.heads import HEADS, listen_heads, planted_head_model
    from listenkit.stats import split_halves

    model = planted_head_model(kind)
    items = pair_items(model, planted_pairs(k, 8), "ref_logprob", reference="greedy")
    in_a = split_halves([it.id for it in items], salt="listenkit-preregistration-v2")
    half_a = [it for it, a in zip(items, in_a, strict=True) if a]
    half_b = [it for it, a in zip(items, in_a, strict=True) if not a]
    assert len(half_a) >= 2 and len(half_b) >= 2
    effects = head_sweep(model, items=half_a, progress=False).effects()
    top = top_heads(effects, 5)
    if kind == "spread":
        assert np.ptp(effects) < 1e-3 * np.abs(effects).max()  # every head the same
    else:
        planted = listen_heads(kind, k)
        assert set(top[: len(planted)]) == set(planted)
        others = [e for (layer, h), e in np.ndenumerate(effects) if (layer + 1, h) not in planted]
        assert np.abs(others).max() < 0.01
    sets = random_head_sets(N_LAYERS, HEADS, 5, 20, np.random.default_rng(20260226))
    result = head_set_recovery(model, half_b, tuple(sorted(top)), sets, tie_rtol=1e-4)
    assert (result["p_value"] < 0.05) == supported, result["p_value"]


class Killed(Exception):
    """Stands for a run killed mid-way (a closed laptop, a pre-empted job)."""


def kill_after_first(_done_items: int, _total: int) -> None:
    """A progress callback that kills the run after its first batch."""
    raise Killed


def test_head_sets_resume_from_finished_batches(tiny_model, pairs):
    """A run killed after its first batch resumes from ``done`` and gives the numbers of
    an uninterrupted run; finished batches are taken from ``done``, not recomputed."""
    items = pair_items(tiny_model, pairs)
    sets = [((1, 0), (3, 2)), ((2, 1),)]
    whole = run_head_sets(tiny_model, items, sets, batch_size=1)

    done: dict = {}
    with pytest.raises(Killed):
        run_head_sets(tiny_model, items, sets, batch_size=1, done=done, progress=kill_after_first)
    assert list(done) == [0]
    resumed = run_head_sets(tiny_model, items, sets, batch_size=1, done=done)
    for a, b in zip(whole, resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(done) == [0, 1]
    done[0] = (np.zeros(1), np.zeros(1), np.zeros((1, 2)))  # taken as is
    assert run_head_sets(tiny_model, items, sets, batch_size=1, done=done)[0][0] == 0.0


def test_head_sweep_resumes_from_finished_batches(tiny_model, pairs):
    """The single-head sweep (``run_patching`` underneath) killed after its first batch
    resumes from ``done`` with the numbers of an uninterrupted sweep."""
    items = pair_items(tiny_model, pairs)
    whole = head_sweep(tiny_model, items=items, batch_size=1, progress=False)

    done: dict = {}
    with pytest.raises(Killed):
        head_sweep(tiny_model, items=items, batch_size=1, progress=kill_after_first, done=done)
    assert list(done) == [0]
    resumed = head_sweep(tiny_model, items=items, batch_size=1, progress=False, done=done)
    np.testing.assert_array_equal(whole.patched, resumed.patched)
    np.testing.assert_array_equal(whole.clean, resumed.clean)
    assert sorted(done) == list(range(len(items)))
    source, base, values = done[0]
    done[0] = (source * 0, base, values)  # finished batches are taken as they are
    assert (
        head_sweep(tiny_model, items=items, batch_size=1, progress=False, done=done).clean[0] == 0
    )


def test_layer_matched_random_sets_keep_the_top_sets_layer_histogram():
    from collections import Counter

    from listenkit.analyses.heads import layer_matched_head_sets

    top = [(3, 0), (4, 7), (5, 2), (5, 6), (4, 6)]
    sets = layer_matched_head_sets(top, 8, 200, np.random.default_rng(0))
    want = Counter(layer for layer, _ in top)
    assert all(Counter(layer for layer, _ in s) == want for s in sets)
    assert all(len(set(s)) == len(top) for s in sets)  # distinct heads
    assert len(set(sets)) > 100  # and they vary
