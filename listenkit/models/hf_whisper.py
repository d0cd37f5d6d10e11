"""Name mapping between openai-whisper and transformers Whisper checkpoints.

openai-whisper ``encoder.blocks.i.attn.query`` <-> transformers
``model.encoder.layers.i.self_attn.q_proj`` and so on; the output projection of
transformers (``proj_out``) is tied to the token embedding, as in openai-whisper.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "dims_from_hf_config",
    "hf_config_from_dims",
    "hf_to_openai_state_dict",
    "load_hf_whisper_dir",
    "openai_to_hf_state_dict",
]

_BLOCK = [
    ("attn.query", "self_attn.q_proj"),
    ("attn.key", "self_attn.k_proj"),
    ("attn.value", "self_attn.v_proj"),
    ("attn.out", "self_attn.out_proj"),
    ("attn_ln", "self_attn_layer_norm"),
    ("cross_attn.query", "encoder_attn.q_proj"),
    ("cross_attn.key", "encoder_attn.k_proj"),
    ("cross_attn.value", "encoder_attn.v_proj"),
    ("cross_attn.out", "encoder_attn.out_proj"),
    ("cross_attn_ln", "encoder_attn_layer_norm"),
    ("mlp.0", "fc1"),
    ("mlp.2", "fc2"),
    ("mlp_ln", "final_layer_norm"),
]
_TOP = [
    ("encoder.conv1", "model.encoder.conv1"),
    ("encoder.conv2", "model.encoder.conv2"),
    ("encoder.ln_post", "model.encoder.layer_norm"),
    ("decoder.token_embedding", "model.decoder.embed_tokens"),
    ("decoder.ln", "model.decoder.layer_norm"),
]
_WHOLE = [
    ("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
    ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
]


def _openai_to_hf_name(name: str) -> str:
    for src, dst in _WHOLE:
        if name == src:
            return dst
    m = re.match(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)$", name)
    if m:
        stack, i, module, leaf = m.groups()
        for src, dst in _BLOCK:
            if module == src:
                return f"model.{stack}.layers.{i}.{dst}.{leaf}"
    for src, dst in _TOP:
        if name.startswith(src + "."):
            return dst + name[len(src) :]
    raise KeyError(f"no transformers name for openai-whisper parameter {name!r}")


def openai_to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an openai-whisper state dict to transformers ``WhisperForConditionalGeneration``."""
    out = {_openai_to_hf_name(k): v for k, v in state.items()}
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


def hf_to_openai_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`openai_to_hf_state_dict` (``proj_out`` must be tied)."""
    out = {_hf_to_openai_name(k): v for k, v in state.items() if k != "proj_out.weight"}
    proj = state.get("proj_out.weight")
    if proj is not None and not torch.equal(proj, out["decoder.token_embedding.weight"]):
        raise ValueError("proj_out.weight is not tied to the token embedding")
    return out


def _hf_to_openai_name(name: str) -> str:
    for src, dst in _WHOLE:
        if name == dst:
            return src
    m = re.match(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)$", name)
    if m:
        stack, i, module, leaf = m.groups()
        for src, dst in _BLOCK:
            if module == dst:
                return f"{stack}.blocks.{i}.{src}.{leaf}"
    for src, dst in _TOP:
        if name.startswith(dst + "."):
            return src + name[len(dst) :]
    raise KeyError(f"no openai-whisper name for transformers parameter {name!r}")


def hf_config_from_dims(dims: dict[str, int]) -> Any:
    """A transformers ``WhisperConfig`` with openai-whisper dimensions (eager attention)."""
    from transformers import WhisperConfig

    multilingual = dims["n_vocab"] >= 51865
    eot = 50257
    sot = 50258 if multilingual else 50257 + 1
    return WhisperConfig(
        vocab_size=dims["n_vocab"],
        num_mel_bins=dims["n_mels"],
        d_model=dims["n_audio_state"],
        encoder_layers=dims["n_audio_layer"],
        encoder_attention_heads=dims["n_audio_head"],
        decoder_layers=dims["n_text_layer"],
        decoder_attention_heads=dims["n_text_head"],
        encoder_ffn_dim=4 * dims["n_audio_state"],
        decoder_ffn_dim=4 * dims["n_text_state"],
        max_source_positions=dims["n_audio_ctx"],
        max_target_positions=dims["n_text_ctx"],
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        activation_function="gelu",
        tie_word_embeddings=True,
        attn_implementation="eager",
    )


def dims_from_hf_config(config: Any) -> dict[str, int]:
    """openai-whisper ``ModelDimensions`` fields from a transformers ``WhisperConfig``."""
    return {
        "n_mels": config.num_mel_bins,
        "n_audio_ctx": config.max_source_positions,
        "n_audio_state": config.d_model,
        "n_audio_head": config.encoder_attention_heads,
        "n_audio_layer": config.encoder_layers,
        "n_vocab": config.vocab_size,
        "n_text_ctx": config.max_target_positions,
        "n_text_state": config.d_model,
        "n_text_head": config.decoder_attention_heads,
        "n_text_layer": config.decoder_layers,
    }


def load_hf_whisper_dir(path: str | Path) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """Read a local transformers Whisper directory as openai-whisper ``(dims, state_dict)``.

    Never touches a model hub (``local_files_only=True``).
    """
    from transformers import WhisperForConditionalGeneration

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a transformers Whisper directory (no config.json); "
            "save one with model.save_pretrained(dir)"
        )
    model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True)
    dims = dims_from_hf_config(model.config)
    return dims, hf_to_openai_state_dict(model.state_dict())
