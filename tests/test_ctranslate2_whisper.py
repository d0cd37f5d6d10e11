"""The CTranslate2 reader and the CTranslate2 -> openai-whisper name mapping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import whisper

from listenkit.models.ctranslate2 import (
    CT2FormatError,
    read_ct2_model,
    whisper_state_dict_from_ct2,
)
from listenkit.models.loading import EMBEDDED_MODELS

from .ct2_files import ct2_variables_from_whisper, write_ct2_model

TINY_DIMS = {
    "n_mels": 8,
    "n_audio_ctx": 6,
    "n_audio_state": 16,
    "n_audio_head": 2,
    "n_audio_layer": 2,
    "n_vocab": 51864,
    "n_text_ctx": 10,
    "n_text_state": 16,
    "n_text_head": 2,
    "n_text_layer": 3,
}


@pytest.fixture
def random_whisper() -> whisper.model.Whisper:
    torch.manual_seed(0)
    module = whisper.model.Whisper(whisper.model.ModelDimensions(**TINY_DIMS))
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p).half().float())  # exactly representable in f16
        module.encoder.positional_embedding.copy_(
            module.encoder.positional_embedding.half().float()
        )
    return module


@pytest.fixture
def ct2_file(tmp_path, random_whisper):
    variables = ct2_variables_from_whisper(random_whisper.state_dict(), TINY_DIMS)
    return write_ct2_model(
        tmp_path / "model.bin",
        variables,
        aliases={"decoder/projection/weight": "decoder/embeddings/weight"},
    )


def test_round_trip_recovers_every_weight(ct2_file, random_whisper):
    dims, state = whisper_state_dict_from_ct2(read_ct2_model(ct2_file.parent))
    assert dims == TINY_DIMS
    expected = random_whisper.state_dict()
    assert set(state) == set(expected)
    for name, value in expected.items():
        assert torch.equal(state[name].float(), value), name
    rebuilt = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
    rebuilt.load_state_dict(state, strict=True)


def test_split_file_parts_concatenate(ct2_file, tmp_path):
    data = ct2_file.read_bytes()
    (tmp_path / "a").write_bytes(data[:1000])
    (tmp_path / "b").write_bytes(data[1000:])
    whole = read_ct2_model(ct2_file)
    parts = read_ct2_model([tmp_path / "a", tmp_path / "b"])
    assert whole.variables.keys() == parts.variables.keys()
    for name in whole.variables:
        assert np.array_equal(whole.variables[name], parts.variables[name])


@pytest.mark.parametrize("name", list(EMBEDDED_MODELS))
def test_packaged_models_map_completely(name):
    checkpoint = read_ct2_model(EMBEDDED_MODELS[name].model_parts())
    assert (checkpoint.spec, checkpoint.revision) == ("WhisperSpec", 3)
    dims, state = whisper_state_dict_from_ct2(checkpoint)
    module = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
    module.load_state_dict(state, strict=True)
    expected = {
        "whisper-tiny.en": (4, 4, 384, 6, 51864),
        "whisper-base": (6, 6, 512, 8, 51865),
    }[name]
    got = (
        dims["n_audio_layer"],
        dims["n_text_layer"],
        dims["n_audio_state"],
        dims["n_audio_head"],
        dims["n_vocab"],
    )
    assert got == expected


def test_truncated_file_is_a_clear_error(ct2_file):
    ct2_file.write_bytes(ct2_file.read_bytes()[:-5000])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(ct2_file)


def test_wrong_binary_version_is_a_clear_error(tmp_path, random_whisper):
    variables = ct2_variables_from_whisper(random_whisper.state_dict(), TINY_DIMS)
    path = write_ct2_model(tmp_path / "model.bin", variables, version=5)
    with pytest.raises(CT2FormatError, match="binary version 5 is not supported"):
        read_ct2_model(path)


def test_non_ct2_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 10)
    with pytest.raises(CT2FormatError, match="not supported"):
        read_ct2_model(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_ct2_model(tmp_path / "nope.bin")


def test_non_whisper_spec_is_rejected(tmp_path, random_whisper):
    variables = ct2_variables_from_whisper(random_whisper.state_dict(), TINY_DIMS)
    path = write_ct2_model(tmp_path / "model.bin", variables, spec="TransformerSpec")
    with pytest.raises(CT2FormatError, match="expected 'WhisperSpec'"):
        whisper_state_dict_from_ct2(read_ct2_model(path))


def test_nonzero_key_bias_is_rejected(tmp_path, random_whisper):
    variables = ct2_variables_from_whisper(random_whisper.state_dict(), TINY_DIMS)
    bias = variables["encoder/layer_1/self_attention/linear_0/bias"].copy()
    bias[TINY_DIMS["n_audio_state"] + 3] = 0.5
    variables["encoder/layer_1/self_attention/linear_0/bias"] = bias
    path = write_ct2_model(tmp_path / "model.bin", variables)
    with pytest.raises(CT2FormatError, match="non-zero key bias"):
        whisper_state_dict_from_ct2(read_ct2_model(path))


def test_dims_are_a_plain_dict_of_ints(ct2_file):
    dims, _ = whisper_state_dict_from_ct2(read_ct2_model(ct2_file))
    whisper.model.ModelDimensions(**dims)
    assert all(type(v) is int for v in dims.values())
    assert dataclasses.asdict(whisper.model.ModelDimensions(**dims)) == dims
