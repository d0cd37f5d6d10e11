"""listenkit's Whisper against two independent implementations on real speech.

References: transformers ``WhisperForConditionalGeneration`` built from the same
weights, and CTranslate2 (its own C++ Whisper, reading the packaged model.bin).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

# CTranslate2's default CPU backend on AMD processors is less accurate than its MKL
# backend (measured on one clip: 1.4e-4 vs 4e-5 max error against a float64 reference);
# the reference should be the most accurate build of itself, so ask for MKL.
os.environ.setdefault("CT2_USE_MKL", "1")
ctranslate2 = pytest.importorskip("ctranslate2", reason="pip install 'listenkit[dev]'")

from listenkit.models.hf_whisper import hf_config_from_dims, openai_to_hf_state_dict  # noqa: E402
from listenkit.models.loading import EMBEDDED_MODELS  # noqa: E402

ENCODER_TOLERANCE = {"whisper-tiny.en": 1e-4, "whisper-base": 2e-3}
# Teacher-forced log-prob vs log_softmax of CTranslate2's own per-step logits.
SCORE_TOLERANCE = 1e-4
# CTranslate2's *reported* score accumulates in reduced precision: on these clips it
# is off from the exact log_softmax of its own logits by up to ~6e-4 nats (measured),
# so it is checked with a looser bound and the exact comparison above carries the test.
REPORTED_SCORE_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def ct2_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CTranslate2 model directory per embedded model (base's parts concatenated)."""
    dirs = {}
    for name, weights in EMBEDDED_MODELS.items():
        parts = weights.model_parts()
        target = tmp_path_factory.mktemp(name)
        with open(target / "model.bin", "wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        for extra in ("config.json", "vocabulary.txt", "tokenizer.json"):
            shutil.copy(parts[0].parent / extra, target / extra)
        dirs[name] = target
    return dirs


@pytest.fixture(scope="module")
def features(embedded_model, speech_clips):
    mel = embedded_model.log_mel([audio for _, audio in speech_clips])
    return mel, embedded_model.encode(mel)


@pytest.fixture(scope="module")
def ct2_model(embedded_model, ct2_dirs):
    return ctranslate2.models.Whisper(
        str(ct2_dirs[embedded_model.name]), device="cpu", compute_type="float32"
    )


def _ct2_features(mel: torch.Tensor):
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))


def test_encoder_matches_ctranslate2(embedded_model, features, ct2_model):
    mel, ours = features
    theirs = np.array(ct2_model.encode(_ct2_features(mel), to_cpu=True))
    diff = float(np.abs(theirs - ours.numpy()).max())
    print(f"{embedded_model.name}: encoder max |listenkit - ctranslate2| = {diff:.3g}")
    assert diff <= ENCODER_TOLERANCE[embedded_model.name]


def test_encoder_matches_float64_transformers(embedded_model, features):
    mel, ours = features
    hf = _transformers_model(embedded_model).double()
    with torch.inference_mode():
        reference = hf.model.encoder(mel.double()).last_hidden_state
    diff = float((reference - ours.double()).abs().max())
    print(f"{embedded_model.name}: encoder max |listenkit - transformers float64| = {diff:.3g}")
    assert diff <= ENCODER_TOLERANCE[embedded_model.name]


def test_greedy_tokens_match_ctranslate2_and_transformers(
    embedded_model, features, ct2_model, speech_clips
):
    mel, encoded = features
    ours = embedded_model.greedy_tokens_from_features(encoded)
    results = ct2_model.generate(
        _ct2_features(mel),
        [list(embedded_model.sot_sequence)] * len(ours),
        beam_size=1,
        suppress_blank=False,
        suppress_tokens=[],
        max_length=224,
    )
    assert [r.sequences_ids[0] for r in results] == ours

    hf = _transformers_model(embedded_model)
    eot = embedded_model.tokenizer.eot
    for i, expected in enumerate(ours):
        ids = torch.tensor([list(embedded_model.sot_sequence)])
        with torch.inference_mode():
            hf_encoded = hf.model.encoder(mel[i : i + 1])
            for _ in range(224):
                logits = hf(encoder_outputs=hf_encoded, decoder_input_ids=ids).logits
                token = int(logits[0, -1].argmax())
                if token == eot:
                    break
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        assert ids[0, len(embedded_model.sot_sequence) :].tolist() == expected
    for (text, _), tokens in zip(speech_clips, ours, strict=True):
        print(f"{embedded_model.name}: {text!r} -> {embedded_model.decode_tokens(tokens)!r}")


def _transformers_model(model):
    from transformers import WhisperForConditionalGeneration

    dims = dataclasses.asdict(model.module.dims)
    hf = WhisperForConditionalGeneration(hf_config_from_dims(dims)).eval()
    hf.load_state_dict(openai_to_hf_state_dict(model.module.state_dict()), strict=True)
    return hf


def test_score_matches_ctranslate2(embedded_model, features, ct2_model):
    mel, encoded = features
    tokens = embedded_model.greedy_tokens_from_features(encoded)
    results = ct2_model.generate(
        _ct2_features(mel),
        [list(embedded_model.sot_sequence)] * len(tokens),
        beam_size=1,
        suppress_blank=False,
        suppress_tokens=[],
        max_length=224,
        length_penalty=0.0,
        return_scores=True,
        return_logits_vocab=True,
    )
    ours = embedded_model.token_logprobs_from_features(encoded, tokens)
    eot = embedded_model.tokenizer.eot
    for result, seq, values in zip(results, tokens, ours, strict=True):
        steps = [torch.tensor(np.array(step)).double() for step in result.logits[0]]
        exact = sum(
            float(torch.log_softmax(step, -1)[tok])
            for step, tok in zip(steps, [*seq, eot], strict=True)
        )
        reported = result.scores[0]
        print(
            f"{embedded_model.name}: score {values.sum():.6f}, ctranslate2 logits "
            f"{exact:.6f} (diff {abs(values.sum() - exact):.2g}), reported {reported:.6f} "
            f"(diff {abs(values.sum() - reported):.2g})"
        )
        assert abs(values.sum() - exact) <= SCORE_TOLERANCE
        assert abs(values.sum() - reported) <= REPORTED_SCORE_TOLERANCE
