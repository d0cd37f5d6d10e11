"""Linear CKA, norm ratios and the logit lens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from listenkit.analyses.listen_layer.profiles import (
    encoder_profiles,
    linear_cka,
    logit_lens,
    norm_ratio,
)
from listenkit.stimuli import noise_pairs, textbank


def test_cka_of_a_representation_with_itself_is_one():
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert linear_cka(x, x) == pytest.approx(1.0)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 5))
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    assert linear_cka(x @ q * 3.7, y) == pytest.approx(linear_cka(x, y))
    assert linear_cka(x, y * 0.01) == pytest.approx(linear_cka(x, y))


def test_cka_hand_computed_case():
    # x = [[1],[2],[3]], y = [[1],[0],[2]]; centred: x=[-1,0,1], y=[0,-1,1]
    # (y^T x)^2 = 1; x^T x = 2; y^T y = 2  ->  CKA = 1 / (2 * 2) = 0.25
    assert linear_cka([[1.0], [2.0], [3.0]], [[1.0], [0.0], [2.0]]) == pytest.approx(0.25)


def test_cka_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same n"):
        linear_cka(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((3, 2)), np.random.default_rng(0).normal(size=(3, 2)))


def test_norm_ratio():
    clean = torch.ones(4, 3)
    assert norm_ratio(clean, 2 * clean) == pytest.approx(2.0)


def test_encoder_profiles_on_real_pairs(tiny_model):
    pairs = list(noise_pairs(textbank()[:2], 0.0, "white", seed=20260226))
    profiles = encoder_profiles(tiny_model, pairs)
    assert profiles.cka.shape == (2, tiny_model.encoder_layers + 1)
    assert np.all((profiles.cka > 0) & (profiles.cka <= 1 + 1e-9))
    same = encoder_profiles(
        tiny_model,
        [type(pairs[0])(id="s", clean=pairs[0].clean, corrupt=pairs[0].clean, attribute="x")],
    )
    np.testing.assert_allclose(same.cka, 1.0, atol=1e-9)
    np.testing.assert_allclose(same.norm_ratio, 1.0, atol=1e-9)


def test_logit_lens_last_layer_equals_the_model_output(tiny_model, speech_clips):
    text, audio = speech_clips[0]
    tokens = [*tiny_model.sot_sequence, *tiny_model.text_tokens(text)]
    lens = logit_lens(tiny_model, audio, tokens)
    assert lens.shape == (tiny_model.decoder_layers, len(tokens), tiny_model.module.dims.n_vocab)
    with torch.inference_mode():
        logits = tiny_model.module(tiny_model.log_mel(audio)[None], torch.tensor([tokens]))
    expected = torch.log_softmax(logits.double(), -1)[0].numpy()
    np.testing.assert_allclose(lens[-1], expected, atol=1e-4)
