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
    assert result.included.sum() >= 5
    da, dt = result.da(), result.dt()
    others = [j for j in range(N_DECODER_LAYERS) if j != k - 1]
    np.testing.assert_allclose(da[:, k - 1], 1.0, atol=1e-9)
    np.testing.assert_allclose(da[:, others], 0.0, atol=1e-9)
    curves = bootstrap_grounding(
        da, dt, result.layers, rng=np.random.default_rng(0), n_resamples=500
    )
    assert curves.l_star == k
    assert set(curves.l_star_samples) == {k}


def test_text_stream_cut_off_gives_dt_zero_and_gc_one():
    model = planted_decoder_model(3, text_blind=True)
    result = grounding_sweep(model, planted_conflicts(model, N_STIMULI), progress=False)
    assert result.included.sum() >= 5  # the prompt does move the margin (block 1 reads it)
    np.testing.assert_allclose(result.dt(), 0.0, atol=1e-9)
    curves = bootstrap_grounding(
        result.da(), result.dt(), result.layers, rng=np.random.default_rng(0), n_resamples=200
    )
    defined = np.isfinite(curves.gc)
    assert defined.any()
    np.testing.assert_allclose(curves.gc[defined], 1.0)


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
    # the text stream after the last block feeds nothing the margin reads
    np.testing.assert_allclose(result.text_patched[:, -1], result.m_x, atol=1e-9)


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
