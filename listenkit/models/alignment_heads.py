"""OpenAI's alignment heads: the decoder cross-attention heads openai-whisper uses for
word-level timestamps, an outside reference for head discovery (nobody here chose them).

openai-whisper ships them per checkpoint in ``whisper._ALIGNMENT_HEADS`` (base85 +
gzip of a boolean [decoder layers x heads] grid). They are decoded here at run time
from the installed package, exactly as ``Whisper.set_alignment_heads`` does, never
copied into listenkit. The entry must match the checkpoint: ``tiny.en`` for
whisper-tiny.en, ``base`` (not ``base.en``) for whisper-base.
"""

from __future__ import annotations

import base64
import gzip

import numpy as np

__all__ = ["alignment_heads", "alignment_mask"]


def _checkpoint(model_name: str) -> str:
    return model_name.removeprefix("whisper-")


def alignment_mask(model_name: str, n_layers: int, n_heads: int) -> np.ndarray:
    """Boolean ``[n_layers, n_heads]`` grid of OpenAI's alignment heads for a checkpoint."""
    import whisper

    name = _checkpoint(model_name)
    if name not in whisper._ALIGNMENT_HEADS:
        known = ", ".join(f"whisper-{k}" for k in whisper._ALIGNMENT_HEADS)
        raise KeyError(f"openai-whisper has no alignment heads for {model_name!r}; it has {known}")
    array = np.frombuffer(gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS[name])), bool)
    if array.size != n_layers * n_heads:
        raise ValueError(
            f"alignment heads of {name!r} cover {array.size} heads, the model has "
            f"{n_layers} x {n_heads}: wrong checkpoint?"
        )
    return array.reshape(n_layers, n_heads).copy()


def alignment_heads(model_name: str, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """``(layer, head)`` pairs, layers from 1 and heads from 0, in row-major order."""
    mask = alignment_mask(model_name, n_layers, n_heads)
    return [(int(layer) + 1, int(head)) for layer, head in zip(*np.nonzero(mask), strict=True)]
