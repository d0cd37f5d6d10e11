"""Read CTranslate2 Whisper checkpoints and map them to openai-whisper names.

A CTranslate2 ``model.bin`` (binary version 6, little-endian) is::

    u32 version; str spec_name; u32 revision; u32 n_vars;
    n_vars x (str name; u8 ndim; ndim x u32 shape; u8 dtype; u32 nbytes; bytes)
    u32 n_aliases; n_aliases x (str alias; str target)

where ``str`` is a u16 length (counting a trailing NUL) followed by the bytes.
The reader is independent of the ``ctranslate2`` package, so it works on any
CTranslate2 Whisper directory (e.g. a faster-whisper download).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CT2Checkpoint",
    "CT2FormatError",
    "read_ct2_model",
    "whisper_state_dict_from_ct2",
]

SUPPORTED_BINARY_VERSION = 6
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: None,  # bfloat16: numpy has no native type; handled via torch
}


class CT2FormatError(ValueError):
    """A file is not a readable CTranslate2 Whisper checkpoint."""


@dataclass(frozen=True, kw_only=True)
class CT2Checkpoint:
    """The variables of one CTranslate2 ``model.bin``, aliases resolved."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray | torch.Tensor]
    source: str


class _Cursor:
    def __init__(self, data: memoryview, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise CT2FormatError(
                f"{self.source}: truncated CTranslate2 model.bin (wanted {n} bytes at "
                f"offset {self.pos}, file has {len(self.data)})"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        raw = bytes(self.take(n))
        if n == 0 or raw[-1] != 0:
            raise CT2FormatError(f"{self.source}: malformed string at offset {self.pos - n}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise CT2FormatError(f"{self.source}: malformed string: {err}") from None


def _read_bytes(paths: Sequence[Path]) -> bytes:
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"CTranslate2 model file(s) not found: {', '.join(missing)}")
    return b"".join(Path(p).read_bytes() for p in paths)


def read_ct2_model(paths: str | Path | Sequence[str | Path]) -> CT2Checkpoint:
    """Parse a CTranslate2 ``model.bin``.

    ``paths`` is a file, a directory holding ``model.bin``, or a list of file
    parts that are concatenated in order (a split ``model.bin``).
    """
    if isinstance(paths, (str, Path)):
        path = Path(paths)
        paths = [path / "model.bin" if path.is_dir() else path]
    parts = [Path(p) for p in paths]
    source = str(parts[0]) if len(parts) == 1 else f"{parts[0]} (+{len(parts) - 1} parts)"
    cur = _Cursor(memoryview(_read_bytes(parts)), source)

    (version,) = cur.unpack("I")
    if version != SUPPORTED_BINARY_VERSION:
        raise CT2FormatError(
            f"{source}: CTranslate2 binary version {version} is not supported "
            f"(expected {SUPPORTED_BINARY_VERSION}); is this a CTranslate2 model.bin?"
        )
    spec = cur.string()
    (revision,) = cur.unpack("I")
    (n_vars,) = cur.unpack("I")
    variables: dict[str, np.ndarray | torch.Tensor] = {}
    for _ in range(n_vars):
        name = cur.string()
        (ndim,) = cur.unpack("B")
        shape = cur.unpack("I" * ndim)
        (dtype_id,) = cur.unpack("B")
        (nbytes,) = cur.unpack("I")
        raw = cur.take(nbytes)
        if dtype_id not in _DTYPES:
            raise CT2FormatError(f"{source}: variable {name!r} has unknown dtype id {dtype_id}")
        dtype = _DTYPES[dtype_id]
        itemsize = 2 if dtype is None else dtype.itemsize
        if int(np.prod(shape, dtype=np.int64)) * itemsize != nbytes:
            raise CT2FormatError(
                f"{source}: variable {name!r} has shape {shape} but {nbytes} bytes"
            )
        if dtype is None:
            as_i16 = torch.frombuffer(bytearray(raw), dtype=torch.int16)
            variables[name] = as_i16.view(torch.bfloat16).reshape(shape)
        else:
            variables[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    (n_aliases,) = cur.unpack("I")
    for _ in range(n_aliases):
        alias, target = cur.string(), cur.string()
        if target not in variables:
            raise CT2FormatError(f"{source}: alias {alias!r} points to missing {target!r}")
        variables[alias] = variables[target]
    if cur.pos != len(cur.data):
        raise CT2FormatError(
            f"{source}: {len(cur.data) - cur.pos} trailing bytes after the aliases"
        )
    return CT2Checkpoint(spec=spec, revision=revision, variables=variables, source=source)


def _tensor(value: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.clone()
    return torch.from_numpy(np.array(value))


def _layer_count(variables: dict, stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise CT2FormatError(f"{stack} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _scalar(variables: dict, name: str) -> int:
    value = variables.get(name)
    if value is None:
        raise CT2FormatError(f"missing configuration scalar {name!r}")
    return int(np.asarray(value).reshape(()))


def whisper_state_dict_from_ct2(
    checkpoint: CT2Checkpoint,
) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """Map a CTranslate2 ``WhisperSpec`` to openai-whisper ``(dims, state_dict)``.

    Fused projections are split: self-attention ``linear_0`` is QKV stacked as rows
    ``[0:d]`` query, ``[d:2d]`` key, ``[2d:3d]`` value; cross-attention ``linear_1``
    is KV stacked as ``[0:d]`` key, ``[d:2d]`` value. Whisper has no key bias, so the
    key rows of the fused bias must be exactly zero; they are checked and dropped.
    Tensors keep the file's dtype (float16 for the packaged models).
    """
    if checkpoint.spec != "WhisperSpec":
        raise CT2FormatError(
            f"{checkpoint.source}: spec is {checkpoint.spec!r}, expected 'WhisperSpec'"
        )
    v = checkpoint.variables
    required = ("encoder/conv1/weight", "decoder/embeddings/weight")
    for name in required:
        if name not in v:
            raise CT2FormatError(f"{checkpoint.source}: missing variable {name!r}")

    state: dict[str, torch.Tensor] = {}

    def put(dst: str, src: str) -> torch.Tensor:
        if src not in v:
            raise CT2FormatError(f"{checkpoint.source}: missing variable {src!r}")
        state[dst] = _tensor(v[src])
        return state[dst]

    def layer_norm(dst: str, src: str) -> None:
        put(f"{dst}.weight", f"{src}/gamma")
        put(f"{dst}.bias", f"{src}/beta")

    def linear(dst: str, src: str, *, bias: bool = True) -> None:
        put(f"{dst}.weight", f"{src}/weight")
        if bias:
            put(f"{dst}.bias", f"{src}/bias")

    def split_fused(dst_prefix: str, src: str, names: Sequence[str], d: int) -> None:
        weight = _tensor(v[f"{src}/weight"])
        bias = _tensor(v[f"{src}/bias"])
        if weight.shape[0] != len(names) * d:
            raise CT2FormatError(
                f"{checkpoint.source}: {src}/weight has {weight.shape[0]} rows, "
                f"expected {len(names) * d}"
            )
        for i, name in enumerate(names):
            rows = slice(i * d, (i + 1) * d)
            state[f"{dst_prefix}.{name}.weight"] = weight[rows].clone()
            if name == "key":
                if torch.any(bias[rows] != 0):
                    raise CT2FormatError(
                        f"{checkpoint.source}: {src} has a non-zero key bias; "
                        "Whisper has none, so this is not a Whisper checkpoint"
                    )
            else:
                state[f"{dst_prefix}.{name}.bias"] = bias[rows].clone()

    put("encoder.conv1.weight", "encoder/conv1/weight")
    put("encoder.conv1.bias", "encoder/conv1/bias")
    put("encoder.conv2.weight", "encoder/conv2/weight")
    put("encoder.conv2.bias", "encoder/conv2/bias")
    put("encoder.positional_embedding", "encoder/position_encodings/encodings")
    layer_norm("encoder.ln_post", "encoder/layer_norm")
    put("decoder.token_embedding.weight", "decoder/embeddings/weight")
    put("decoder.positional_embedding", "decoder/position_encodings/encodings")
    layer_norm("decoder.ln", "decoder/layer_norm")

    d_audio = state["encoder.conv1.weight"].shape[0]
    d_text = state["decoder.token_embedding.weight"].shape[1]
    n_audio_layer = _layer_count(v, "encoder")
    n_text_layer = _layer_count(v, "decoder")

    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split_fused(
            f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"), d_audio
        )
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split_fused(
            f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"), d_text
        )
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        layer_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        split_fused(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"), d_text)
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    projection = v.get("decoder/projection/weight")
    if projection is not None and not np.array_equal(
        np.asarray(projection), state["decoder.token_embedding.weight"].numpy()
    ):
        raise CT2FormatError(
            f"{checkpoint.source}: decoder/projection/weight is not tied to the embeddings; "
            "openai-whisper cannot represent an untied output projection"
        )

    dims = {
        "n_mels": int(state["encoder.conv1.weight"].shape[1]),
        "n_audio_ctx": int(state["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(d_audio),
        "n_audio_head": _scalar(v, "encoder/num_heads"),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(state["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(state["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(d_text),
        "n_text_head": _scalar(v, "decoder/num_heads"),
        "n_text_layer": n_text_layer,
    }
    return dims, state
