"""The gc machinery on Whisper: planted truth, an independent check on real weights, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from listenkit.analyses.grounding.margins import conflict_margins
from listenkit.analyses.grounding.whisper import grounding_sweep
from listenkit.planted.decoder import N_DECODER_LAYERS, planted_conflicts, planted_decoder_model
from listenkit.stats.grounding import bootstrap_grounding
from listenkit.stimuli import conflict_stimuli
from listenkit.stimuli.conflict import noisy_conflicts

N_STIMULI = 20


@pytest.mark.parametrize("k", [2, 3])
def test_audio_read_only_at_layer_k_gives_l_star_k(k):
    model = planted_decoder_model(k)
    result = grounding_sweep(model, planted_conflicts(model, N_STIMULI), progress=False)
    # exact identities on every stimulus (the floors play no part): patching block k's
    # read gives the audio source's margin, any other block's gives the base margin
    others = [j for j in range(N_DECODER_LAYERS) if j != k - 1]
    np.testing.assert_allclose(result.audio_patched[:, k - 1], result.m_audio_source, atol=1e-6)
    np.testing.assert_allclose(
        result.audio_patched[:, others], result.m_x[:, None].repeat(len(others), 1), atol=1e-6
    )
    assert result.included.sum() >= 1  # signed floors keep the stimuli the model "gets right"
    da, dt = result.da_ratio(), result.dt_ratio()
    np.testing.assert_allclose(da.value()[k - 1], 1.0, atol=1e-6)
    curves = bootstrap_grounding(
        da, dt, result.layers, rng=np.random.default_rng(0), n_resamples=500
    )
    assert curves.l_star == k
    assert set(curves.l_star_samples) == {k}


@pytest.mark.parametrize(("audio_layer", "text_layer"), [(3, 1), (2, 4), (4, 2)])
def test_read_streams_find_the_planted_audio_and_text_layers(audio_layer, text_layer):
    """Audio read at block j only, the prompt at block k only: dA = 1 at j, dT = 1 at k,
    0 elsewhere; with k = N, dT(N) = 1: nothing is forced at the last layer (v1: 0)."""
    model = planted_decoder_model(audio_layer, text_layer=text_layer)
    stimuli = planted_conflicts(model, N_STIMULI)
    result = grounding_sweep(model, stimuli, progress=False)
    for patched, source, layer in (
        (result.audio_patched, result.m_audio_source, audio_layer),
        (result.text_patched, result.m_text_source, text_layer),
    ):
        expected = np.where(np.arange(1, N_DECODER_LAYERS + 1) == layer, source[:, None],
                            result.m_x[:, None])  # fmt: skip
        np.testing.assert_allclose(patched, expected, atol=1e-6)
    moved = np.abs(result.text_gap) >= 1.0
    assert moved.sum() >= 3  # the prompt does move the margin, through block k alone


@pytest.fixture(scope="module")
def real_conflicts(tiny_model):
    return list(
        conflict_stimuli(
            per_flip_type=1, encode=tiny_model.text_tokens, tokenizer_name=tiny_model.name, seed=3
        )
    )


def test_base_and_source_margins_match_an_independent_scorer(tiny_model, real_conflicts):
    """m(x), m(x_a), m(x_t) from the engine equal ``conflict_margins`` (plain teacher forcing)."""
    result = grounding_sweep(tiny_model, real_conflicts, progress=False)
    m_x = conflict_margins(tiny_model, real_conflicts, audio="ref", text_channel="conflict")
    m_a = conflict_margins(tiny_model, real_conflicts, audio="conflict", text_channel="conflict")
    m_t = conflict_margins(tiny_model, real_conflicts, audio="ref", text_channel="ref")
    np.testing.assert_allclose(result.m_x, m_x, atol=2e-3)
    np.testing.assert_allclose(result.m_audio_source, m_a, atol=2e-3)
    np.testing.assert_allclose(result.m_text_source, m_t, atol=2e-3)


def _hand_patched_margin(model, stimulus, layer: int, stream: str) -> float:
    """An independent K/V patch: plain ``decoder(tokens, xa)`` calls (no cache, no
    restart), forward hooks on block ``layer``'s key and value projections."""
    import torch

    with torch.inference_mode():
        return _hand_patched(model, stimulus, layer, stream)


def _hand_patched(model, stimulus, layer: int, stream: str) -> float:
    import torch

    from listenkit.stimuli.conflict import align_flip

    al = align_flip(stimulus.ref_text, stimulus.conflict_text, model.text_tokens)
    decoder = model.module.decoder
    block = decoder.blocks[layer - 1]

    def tokens(prompt, span):
        head = model.prompt_prefix(prompt)
        return torch.tensor([head + list(al.prefix) + list(span)]), len(head) + len(al.prefix)

    def features(audio):
        return model.encode(model.log_mel([audio]))

    ref_audio, conflict_audio = stimulus.ref_audio.audio, stimulus.conflict_audio.audio
    if stream == "audio":  # block l's cross-attention reads the conflict audio's K/V
        source_xa = features(conflict_audio)
        replace = {block.cross_attn.key: block.cross_attn.key(source_xa),
                   block.cross_attn.value: block.cross_attn.value(source_xa)}  # fmt: skip
        positions = slice(None)
    else:  # block l's self-attention reads x_t's K/V at the prompt positions
        replace, positions = {}, slice(1, 1 + len(al.conflict_tokens))
        store = {}
        handles = [
            proj.register_forward_hook(lambda m, a, out, proj=proj: store.__setitem__(proj, out))
            for proj in (block.attn.key, block.attn.value)
        ]
        with torch.inference_mode():
            decoder(tokens(al.ref_tokens, al.ref_span)[0][:, :-1], features(ref_audio))
        for h in handles:
            h.remove()
        replace = store

    def hook(module, _args, out):
        patched = out.clone()
        patched[:, positions] = replace[module][:, positions]
        return patched

    margin = 0.0
    xa = features(ref_audio)
    for span, sign in ((al.ref_span, 1.0), (al.conflict_span, -1.0)):
        row, start = tokens(al.conflict_tokens, span)
        handles = [proj.register_forward_hook(hook) for proj in replace]
        with torch.inference_mode():
            logits = decoder(row[:, :-1], xa)
        for h in handles:
            h.remove()
        logprobs = torch.log_softmax(logits.double(), dim=-1)[0]
        targets = row[0, 1:]
        picked = logprobs[torch.arange(len(targets)), targets]
        margin += sign * float(picked[start - 1 :].sum())
    return margin


def test_read_streams_match_a_hand_written_kv_patch(tiny_model, real_conflicts):
    stimulus = real_conflicts[0]
    result = grounding_sweep(tiny_model, [stimulus], progress=False)
    for layer in (1, tiny_model.decoder_layers):
        audio = _hand_patched_margin(tiny_model, stimulus, layer, "audio")
        text = _hand_patched_margin(tiny_model, stimulus, layer, "text")
        assert result.audio_patched[0, layer - 1] == pytest.approx(audio, abs=2e-3)
        assert result.text_patched[0, layer - 1] == pytest.approx(text, abs=2e-3)


def test_hooks_and_nnsight_backends_agree(tiny_model, real_conflicts):
    a = grounding_sweep(tiny_model, real_conflicts[:2], progress=False)
    b = grounding_sweep(tiny_model, real_conflicts[:2], progress=False, backend="nnsight")
    np.testing.assert_allclose(a.audio_patched, b.audio_patched, atol=1e-3)
    np.testing.assert_allclose(a.text_patched, b.text_patched, atol=1e-3)


def test_noisy_conflicts_add_noise_at_the_snr_to_both_audios(real_conflicts):
    noisy = noisy_conflicts(real_conflicts[:2], 5.0, seed=1)
    again = noisy_conflicts(real_conflicts[:2], 5.0, seed=1)
    for clean, n, m in zip(real_conflicts[:2], noisy, again, strict=True):
        for role in ("ref_audio", "conflict_audio"):
            utt = getattr(n, role)
            assert abs(utt.meta["measured_snr_db"] - 5.0) < 0.05
            assert not np.array_equal(utt.audio, getattr(clean, role).audio)
            np.testing.assert_array_equal(utt.audio, getattr(m, role).audio)  # seeded
        assert n.ref_text == clean.ref_text and n.meta["noise"]["snr_db"] == 5.0


def test_bad_input_is_refused_clearly(tiny_model, real_conflicts):
    s = real_conflicts[0]
    from dataclasses import replace

    with pytest.raises(ValueError, match="audio for both texts"):
        grounding_sweep(tiny_model, [replace(s, conflict_audio=None)], progress=False)
    misaligned = replace(
        s,
        ref_text="The shop is open.",
        conflict_text="The shop is not open.",
        ref_audio=None,
        conflict_audio=None,
    )
    misaligned = replace(
        misaligned,
        ref_audio=replace(s.ref_audio, text="The shop is open."),
        conflict_audio=replace(s.conflict_audio, text="The shop is not open."),
    )
    with pytest.raises(ValueError, match="token counts differ"):
        grounding_sweep(tiny_model, [misaligned], progress=False)
    with pytest.raises(ValueError, match="floor"):
        grounding_sweep(tiny_model, [s], floor=0.0, progress=False)
    with pytest.raises(ValueError, match="no conflict stimuli"):
        grounding_sweep(tiny_model, [], progress=False)
