"""Plain torch hooks that read or overwrite a site's activations (the default backend).

``capture`` stores a detached copy of each (layer, access) value; ``patched``
overwrites the value at one layer with a stored one, at all positions or at given
ones (a shared index, or one index per batch row), for the given heads only when
the access is ``input_heads``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from listenkit.engine.site_tables import Access, read, resolve

__all__ = ["Positions", "capture", "capture_block_inputs", "patched"]

Positions = torch.Tensor | Sequence[torch.Tensor] | None


@contextmanager
def capture(
    root: nn.Module, accesses: Sequence[Access], layers: Sequence[int], store: dict
) -> Iterator[dict]:
    """Record ``store[(layer, k)]`` = value of ``accesses[k]`` at each layer during the block."""
    handles = []
    for layer in layers:
        for k, access in enumerate(accesses):
            module = resolve(root, access, layer)

            def hook(_m, args, output, key=(layer, k), access=access):
                store[key] = read(access, args, output).detach().clone()

            handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture_block_inputs(
    blocks: nn.ModuleList, layers: Sequence[int], store: dict
) -> Iterator[dict]:
    """Record ``store[layer]`` = the residual stream entering block ``layer`` (1-based)."""
    handles = []
    for layer in layers:

        def pre_hook(_m, args, key=layer):
            store[key] = args[0].detach().clone()

        handles.append(blocks[layer - 1].register_forward_pre_hook(pre_hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _overwrite(
    target: torch.Tensor,
    value: torch.Tensor,
    positions: Positions,
    feature_slices: Sequence[slice] | None,
) -> torch.Tensor:
    if value.shape != target.shape:
        raise ValueError(
            f"cannot patch a value of shape {tuple(value.shape)} into {tuple(target.shape)}"
        )
    out = target.clone()
    slices = feature_slices or [slice(None)]
    for feats in slices:
        if positions is None:
            out[..., feats] = value[..., feats]
        elif isinstance(positions, torch.Tensor):
            out[:, positions, feats] = value[:, positions, feats]
        else:
            for row, pos in enumerate(positions):
                out[row, pos, feats] = value[row, pos, feats]
    return out


@contextmanager
def patched(
    root: nn.Module,
    accesses: Sequence[Access],
    layer: int,
    values: Sequence[torch.Tensor],
    *,
    positions: Positions = None,
    heads: Sequence[int] | None = None,
    n_heads: int | None = None,
) -> Iterator[None]:
    """Overwrite each access at ``layer`` with ``values[k]`` while the block runs."""
    handles = []
    for access, value in zip(accesses, values, strict=True):
        module = resolve(root, access, layer)
        if access.kind == "input_heads":
            d = value.shape[-1]
            if heads is None or n_heads is None:
                raise ValueError("head patching needs heads and n_heads")
            width = d // n_heads
            slices = [slice(h * width, (h + 1) * width) for h in heads]

            def pre_hook(_m, args, value=value, slices=slices):
                return (_overwrite(args[0], value, positions, slices), *args[1:])

            handles.append(module.register_forward_pre_hook(pre_hook))
        else:

            def hook(_m, _args, output, value=value, access=access):
                if access.kind == "output0":
                    return (_overwrite(output[0], value, positions, None), *output[1:])
                return _overwrite(output, value, positions, None)

            handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
