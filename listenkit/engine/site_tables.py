"""One site table per architecture: component -> (module path, how to read/write it).

Adding a model family means adding a table. Each entry is a tuple of ``Access``es
(``encoder.block_write`` has two: the attention and the MLP writes). ``kind``:

- ``"output"``: the module's output tensor;
- ``"output0"``: element 0 of the module's output tuple (attention modules);
- ``"input_heads"``: the input of the attention output projection, whose
  ``d_model`` features are ``n_heads`` contiguous head slices (a head's
  contribution to attn_out is ``W_O[:, slice] @ z[slice]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["HF_WHISPER", "OPENAI_WHISPER", "QWEN2_AUDIO_LM", "Access", "resolve"]


@dataclass(frozen=True)
class Access:
    path: str  # "{i}" is the 0-based block index
    kind: str  # "output" | "output0" | "input_heads"


def _a(path: str, kind: str = "output") -> tuple[Access, ...]:
    return (Access(path, kind),)


OPENAI_WHISPER: dict[str, tuple[Access, ...]] = {
    "encoder.resid": _a("encoder.blocks.{i}"),
    "encoder.attn_out": _a("encoder.blocks.{i}.attn", "output0"),
    "encoder.mlp_out": _a("encoder.blocks.{i}.mlp"),
    "encoder.block_write": (
        Access("encoder.blocks.{i}.attn", "output0"),
        Access("encoder.blocks.{i}.mlp", "output"),
    ),
    "encoder.head": _a("encoder.blocks.{i}.attn.out", "input_heads"),
    "decoder.cross_head": _a("decoder.blocks.{i}.cross_attn.out", "input_heads"),
    "decoder.cross_attn_out": _a("decoder.blocks.{i}.cross_attn", "output0"),
    "decoder.self_attn_out": _a("decoder.blocks.{i}.attn", "output0"),
    "decoder.resid": _a("decoder.blocks.{i}"),
    # the key and value projections' outputs; the hooks backend substitutes the cross-
    # attention ones in its K/V cache (those modules do not run when the cache has them)
    "decoder.cross_kv": (
        Access("decoder.blocks.{i}.cross_attn.key", "output"),
        Access("decoder.blocks.{i}.cross_attn.value", "output"),
    ),
    "decoder.self_kv": (
        Access("decoder.blocks.{i}.attn.key", "output"),
        Access("decoder.blocks.{i}.attn.value", "output"),
    ),
}

HF_WHISPER: dict[str, tuple[Access, ...]] = {
    "encoder.resid": _a("model.encoder.layers.{i}"),
    "encoder.attn_out": _a("model.encoder.layers.{i}.self_attn", "output0"),
    "encoder.mlp_out": _a("model.encoder.layers.{i}.fc2"),
    "encoder.block_write": (
        Access("model.encoder.layers.{i}.self_attn", "output0"),
        Access("model.encoder.layers.{i}.fc2", "output"),
    ),
    "encoder.head": _a("model.encoder.layers.{i}.self_attn.out_proj", "input_heads"),
    "decoder.cross_head": _a("model.decoder.layers.{i}.encoder_attn.out_proj", "input_heads"),
    "decoder.cross_attn_out": _a("model.decoder.layers.{i}.encoder_attn", "output0"),
    "decoder.self_attn_out": _a("model.decoder.layers.{i}.self_attn", "output0"),
    "decoder.resid": _a("model.decoder.layers.{i}"),
    "decoder.cross_kv": (
        Access("model.decoder.layers.{i}.encoder_attn.k_proj", "output"),
        Access("model.decoder.layers.{i}.encoder_attn.v_proj", "output"),
    ),
    "decoder.self_kv": (
        Access("model.decoder.layers.{i}.self_attn.k_proj", "output"),
        Access("model.decoder.layers.{i}.self_attn.v_proj", "output"),
    ),
}

# The language model of transformers' Qwen2AudioForConditionalGeneration; positions
# are LLM token positions (audio placeholder tokens vs text tokens).
QWEN2_AUDIO_LM: dict[str, tuple[Access, ...]] = {
    "lm.resid": _a("model.language_model.layers.{i}"),
    "lm.attn_out": _a("model.language_model.layers.{i}.self_attn", "output0"),
    "lm.mlp_out": _a("model.language_model.layers.{i}.mlp"),
    # k_proj/v_proj outputs before the rotary embedding, which depends on the position
    # only: patching them at a position equals patching the rotated keys there
    "lm.self_kv": (
        Access("model.language_model.layers.{i}.self_attn.k_proj", "output"),
        Access("model.language_model.layers.{i}.self_attn.v_proj", "output"),
    ),
}


def resolve(root: nn.Module, access: Access, layer: int) -> nn.Module:
    """The module behind ``access`` at 1-based ``layer``."""
    return root.get_submodule(access.path.format(i=layer - 1))


def read(access: Access, module_input: tuple, module_output) -> torch.Tensor:
    """The tensor an access refers to, from a hook's view of the module call."""
    if access.kind == "input_heads":
        return module_input[0]
    if access.kind == "output0":
        return module_output[0]
    return module_output
