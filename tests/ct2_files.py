"""Write CTranslate2 ``model.bin`` files for tests (the inverse of the reader)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

_DTYPE_IDS = {
    np.dtype("<f4"): 0,
    np.dtype("i1"): 1,
    np.dtype("<i2"): 2,
    np.dtype("<i4"): 3,
    np.dtype("<f2"): 4,
}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2_model(
    path: Path,
    variables: dict[str, np.ndarray],
    *,
    aliases: dict[str, str] | None = None,
    version: int = 6,
    spec: str = "WhisperSpec",
    revision: int = 3,
) -> Path:
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", revision)]
    out.append(struct.pack("<I", len(variables)))
    for name, value in variables.items():
        value = np.ascontiguousarray(value)
        out.append(_string(name))
        out.append(struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape))
        out.append(struct.pack("<B", _DTYPE_IDS[value.dtype]))
        out.append(struct.pack("<I", value.nbytes) + value.tobytes())
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out.append(_string(alias) + _string(target))
    path.write_bytes(b"".join(out))
    return path


def ct2_variables_from_whisper(
    state: dict[str, torch.Tensor], dims: dict[str, int]
) -> dict[str, np.ndarray]:
    """openai-whisper state dict -> CTranslate2 WhisperSpec variables (fused QKV / KV)."""

    def a(name: str) -> np.ndarray:
        return state[name].detach().numpy().astype(np.float16)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float16)

    v: dict[str, np.ndarray] = {}
    for stack, blocks, d, heads in (
        ("encoder", dims["n_audio_layer"], dims["n_audio_state"], dims["n_audio_head"]),
        ("decoder", dims["n_text_layer"], dims["n_text_state"], dims["n_text_head"]),
    ):
        v[f"{stack}/num_heads"] = np.array(heads, dtype=np.int16)
        for i in range(blocks):
            o, c = f"{stack}.blocks.{i}", f"{stack}/layer_{i}"
            for ln_o, ln_c in (
                ("attn_ln", "self_attention/layer_norm"),
                ("mlp_ln", "ffn/layer_norm"),
            ):
                v[f"{c}/{ln_c}/gamma"] = a(f"{o}.{ln_o}.weight")
                v[f"{c}/{ln_c}/beta"] = a(f"{o}.{ln_o}.bias")
            v[f"{c}/self_attention/linear_0/weight"] = np.concatenate(
                [
                    a(f"{o}.attn.query.weight"),
                    a(f"{o}.attn.key.weight"),
                    a(f"{o}.attn.value.weight"),
                ]
            )
            v[f"{c}/self_attention/linear_0/bias"] = np.concatenate(
                [a(f"{o}.attn.query.bias"), zeros(d), a(f"{o}.attn.value.bias")]
            )
            v[f"{c}/self_attention/linear_1/weight"] = a(f"{o}.attn.out.weight")
            v[f"{c}/self_attention/linear_1/bias"] = a(f"{o}.attn.out.bias")
            for lin_o, lin_c in (("mlp.0", "ffn/linear_0"), ("mlp.2", "ffn/linear_1")):
                v[f"{c}/{lin_c}/weight"] = a(f"{o}.{lin_o}.weight")
                v[f"{c}/{lin_c}/bias"] = a(f"{o}.{lin_o}.bias")
            if stack == "decoder":
                v[f"{c}/attention/layer_norm/gamma"] = a(f"{o}.cross_attn_ln.weight")
                v[f"{c}/attention/layer_norm/beta"] = a(f"{o}.cross_attn_ln.bias")
                v[f"{c}/attention/linear_0/weight"] = a(f"{o}.cross_attn.query.weight")
                v[f"{c}/attention/linear_0/bias"] = a(f"{o}.cross_attn.query.bias")
                v[f"{c}/attention/linear_1/weight"] = np.concatenate(
                    [a(f"{o}.cross_attn.key.weight"), a(f"{o}.cross_attn.value.weight")]
                )
                v[f"{c}/attention/linear_1/bias"] = np.concatenate(
                    [zeros(d), a(f"{o}.cross_attn.value.bias")]
                )
                v[f"{c}/attention/linear_2/weight"] = a(f"{o}.cross_attn.out.weight")
                v[f"{c}/attention/linear_2/bias"] = a(f"{o}.cross_attn.out.bias")
    for conv in ("conv1", "conv2"):
        v[f"encoder/{conv}/weight"] = a(f"encoder.{conv}.weight")
        v[f"encoder/{conv}/bias"] = a(f"encoder.{conv}.bias")
    v["encoder/position_encodings/encodings"] = a("encoder.positional_embedding")
    v["encoder/layer_norm/gamma"] = a("encoder.ln_post.weight")
    v["encoder/layer_norm/beta"] = a("encoder.ln_post.bias")
    v["decoder/embeddings/weight"] = a("decoder.token_embedding.weight")
    v["decoder/position_encodings/encodings"] = a("decoder.positional_embedding")
    v["decoder/layer_norm/gamma"] = a("decoder.ln.weight")
    v["decoder/layer_norm/beta"] = a("decoder.ln.bias")
    v["decoder/activation"] = np.array(0, dtype=np.int8)
    return v
