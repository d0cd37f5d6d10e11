"""The Qwen2-Audio path on tiny random configs: inputs, gc machinery, loading, NDIF errors.

Tiny random models test the machinery only; real weights come from
``$LISTENKIT_QWEN2_AUDIO`` (the claims suite skips Qwen2-Audio without them).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from listenkit.analyses.grounding.audio_lm import RemoteUnavailableError, lm_grounding_sweep
from listenkit.models.audio import AudioError
from listenkit.models.qwen2_audio import (
    QWEN2_AUDIO_ENV,
    Qwen2AudioNotConfiguredError,
    load_qwen2_audio,
    tiny_qwen2_audio,
)
from listenkit.planted.decoder import planted_conflicts


@pytest.fixture(scope="module")
def lm():
    return tiny_qwen2_audio(init_std=0.5)


@pytest.fixture(scope="module")
def stimuli(lm):
    return planted_conflicts(lm, 3, seed=2)


def test_inputs_follow_the_chat_template_with_known_positions(lm):
    audio = np.zeros(16_000 * 2, dtype=np.float32)
    audio[:16_000] = 0.1 * np.sin(np.arange(16_000) / 5.0)
    context = lm.text_tokens("The red car is next to the house.")
    run = lm.build(audio, context, [(lm.text_tokens("The red"), 1, 1.0)])
    ids = run.input_ids[0]
    n_audio = len(run.audio_positions)
    assert n_audio == 50  # 2 s = 200 mel frames -> 100 after conv2 -> 50 after pooling
    assert (ids[list(run.audio_positions)] == lm.tokens.audio).all()
    assert ids[run.audio_positions[0] - 1] == lm.tokens.audio_bos
    assert ids[run.audio_positions[-1] + 1] == lm.tokens.audio_eos
    assert ids[list(run.context_positions)].tolist() == context
    assert int((ids == lm.tokens.audio).sum()) == n_audio
    # the scored token is the answer's second token, predicted from the position before it
    scored = torch.nonzero(run.score_masks[0])[:, 0].tolist()
    assert len(scored) == 1 and ids[scored[0] + 1] == lm.text_tokens("The red")[1]
    # transformers accepts the inputs (its own audio-token count check passes)
    with torch.inference_mode():
        logits = lm.module(**lm.forward_kwargs(run)).logits
    assert logits.shape[:2] == run.input_ids.shape


def test_padding_lines_up_clips_of_different_lengths(lm):
    short, long = np.zeros(16_000, np.float32) + 0.01, np.zeros(24_000, np.float32) + 0.01
    context = lm.text_tokens("A test.")
    a = lm.build(short, context, [(context, 0, 1.0)], pad_to_samples=24_000)
    b = lm.build(long, context, [(context, 0, 1.0)], pad_to_samples=24_000)
    assert a.audio_positions == b.audio_positions
    with pytest.raises(ValueError, match="cannot pad"):
        lm.build(long, context, [(context, 0, 1.0)], pad_to_samples=16_000)


def test_gc_sweep_runs_end_to_end_and_the_backends_agree(lm, stimuli):
    hooks = lm_grounding_sweep(lm, stimuli, floor=1e-3, progress=False)
    traced = lm_grounding_sweep(lm, stimuli, floor=1e-3, progress=False, backend="nnsight")
    for name in ("m_x", "m_audio_source", "m_text_source", "audio_patched", "text_patched"):
        np.testing.assert_allclose(getattr(hooks, name), getattr(traced, name), atol=1e-5)
    assert hooks.layers == (1, 2, 3, 4)
    assert hooks.audio_site.component == "lm.self_kv"  # v2: what layer l's attention reads
    assert hooks.audio_site.positions == "audio" and hooks.text_site.positions == "context"
    # the last layer's reads do reach the scored positions (nothing forced there) ...
    assert np.abs(hooks.audio_patched[:, -1] - hooks.m_x).max() > 1e-4
    assert np.abs(hooks.text_patched[:, -1] - hooks.m_x).max() > 1e-4
    da, dt = hooks.da(), hooks.dt()
    assert np.isfinite(da).all() and np.isfinite(dt).all()


def test_patching_a_stream_at_layer_one_from_the_base_itself_changes_nothing(lm, stimuli):
    """Sanity: x patched with its own activations is x (same positions, same values)."""
    from listenkit.analyses.grounding.audio_lm import _HookRunner, _runs
    from listenkit.engine.site_tables import QWEN2_AUDIO_LM

    runner = _HookRunner(lm, QWEN2_AUDIO_LM["lm.self_kv"])
    x, _, _ = _runs(lm, stimuli[0])
    m_x, acts = runner.source(x, [1, 2])
    for layer in (1, 2):
        assert runner.patched(x, layer, acts[layer], x.audio_positions) == pytest.approx(m_x)


def test_missing_weights_say_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv(QWEN2_AUDIO_ENV, raising=False)
    with pytest.raises(Qwen2AudioNotConfiguredError, match=QWEN2_AUDIO_ENV):
        load_qwen2_audio()
    with pytest.raises(Qwen2AudioNotConfiguredError, match=r"config\.json"):
        load_qwen2_audio(tmp_path)


def test_remote_without_an_ndif_key_fails_clearly(lm, stimuli, monkeypatch):
    from listenkit.engine.nnsight_import import nnsight_module

    monkeypatch.setattr(nnsight_module().CONFIG.API, "APIKEY", None)
    with pytest.raises(RemoteUnavailableError, match="NDIF_API_KEY"):
        lm_grounding_sweep(lm, stimuli, backend="nnsight", remote=True, progress=False)
    with pytest.raises(ValueError, match="backend='nnsight'"):
        lm_grounding_sweep(lm, stimuli, remote=True, progress=False)


def test_bad_audio_and_layers_are_refused(lm, stimuli):
    context = lm.text_tokens("A test.")
    with pytest.raises(AudioError):
        lm.build(np.zeros((2, 16_000), np.float32), context, [(context, 0, 1.0)])
    with pytest.raises(ValueError, match="30 s"):
        lm.build(np.zeros(31 * 16_000, np.float32), context, [(context, 0, 1.0)])
    with pytest.raises(ValueError, match="out of range"):
        lm_grounding_sweep(lm, stimuli, layers=[5], progress=False)
    with pytest.raises(ValueError, match="unknown backend"):
        lm_grounding_sweep(lm, stimuli, backend="jax", progress=False)


def _save_tiny_checkpoint(directory):
    """A tiny Qwen2-Audio saved like a real one: safetensors, a fast tokenizer with the
    chat's special tokens (word-level vocabulary of the conflict templates), preprocessor."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2AudioForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    from listenkit.models.qwen2_audio import (
        CONTEXT_LEAD,
        INSTRUCTION,
        SYSTEM,
        tiny_qwen2_audio_config,
    )
    from listenkit.stimuli.conflict import conflict_templates

    words = set(f"system user assistant Audio 1 : {SYSTEM} {CONTEXT_LEAD} {INSTRUCTION}".split())
    for templates in conflict_templates().values():
        for t in templates:
            words |= set(t.ref_text.split()) | set(t.conflict_text.split())
    pieces = {w.strip(".,:?") for w in words} | {".", ",", ":", "?"}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>",
                "<|audio_eos|>", "[UNK]"]  # fmt: skip
    vocab = {tok: i for i, tok in enumerate([*specials, *sorted(pieces - {""})])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[:6]})
    config = tiny_qwen2_audio_config(
        vocab_size=len(vocab), audio_token_id=vocab["<|AUDIO|>"], init_std=0.5
    )
    torch.manual_seed(0)
    Qwen2AudioForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=128).save_pretrained(directory)


def test_local_checkpoint_loads_and_runs_end_to_end(tmp_path, monkeypatch):
    _save_tiny_checkpoint(tmp_path)
    monkeypatch.setenv(QWEN2_AUDIO_ENV, str(tmp_path))
    lm = load_qwen2_audio(dtype=torch.float32)
    assert lm.n_layers == 4 and lm.tokens.audio == lm.module.config.audio_token_id
    stimuli = planted_conflicts(lm, 2, seed=4)
    result = lm_grounding_sweep(lm, stimuli, floor=1e-3, progress=False)
    assert np.isfinite(result.audio_patched).all() and np.isfinite(result.text_patched).all()
    assert result.audio_gap.any()
