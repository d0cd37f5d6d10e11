"""Intervention sites as data.

A ``Site`` names *what* is patched: a component (``encoder.attn_out``, ...), a layer
(numbered from 1; ``None`` means "every layer", i.e. a sweep), optional positions
(encoder frames or decoder token positions, 0-based; or the name of a per-item
position set such as ``"prompt"``) and, for ``encoder.head``, head indices (0-based).
Sites are frozen, keyword-only and JSON-serialisable, so a report can say exactly
what was patched.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["COMPONENTS", "HEAD_COMPONENTS", "DegenerateSiteWarning", "Site", "SiteError"]

COMPONENTS: dict[str, str] = {
    "encoder.resid": "residual stream after encoder block l",
    "encoder.attn_out": "self-attention sublayer output of encoder block l (its residual write)",
    "encoder.mlp_out": "MLP sublayer output of encoder block l",
    "encoder.block_write": "attention + MLP writes of encoder block l",
    "encoder.head": "attention heads' outputs in encoder block l: the input of attn.out, "
    "slices h*d_head:(h+1)*d_head (TransformerLens' z)",
    "decoder.cross_head": "cross-attention heads' outputs in decoder block l: the input of "
    "cross_attn.out, slices h*d_head:(h+1)*d_head",
    "decoder.cross_attn_out": "cross-attention sublayer output of decoder block l",
    "decoder.self_attn_out": "self-attention sublayer output of decoder block l",
    "decoder.resid": "residual stream after decoder block l",
    "decoder.cross_kv": "keys and values decoder block l's cross-attention reads (the audio, "
    "as block l sees it); queries stay the base run's",
    "decoder.self_kv": "keys and values decoder block l's self-attention reads (at positions: "
    "e.g. the prompt); queries stay the base run's",
    "lm.resid": "residual stream after language-model layer l (audio LMs: Qwen2-Audio)",
    "lm.attn_out": "self-attention output of language-model layer l (audio LMs)",
    "lm.mlp_out": "MLP output of language-model layer l (audio LMs)",
    "lm.self_kv": "keys and values language-model layer l's self-attention reads (at "
    "positions: audio tokens or text context; audio LMs)",
}


HEAD_COMPONENTS = ("encoder.head", "decoder.cross_head")


class SiteError(ValueError):
    """An unknown component, a layer out of range, or positions that do not fit."""


class DegenerateSiteWarning(UserWarning):
    """The site cannot localise anything (e.g. the whole residual at all positions)."""


@dataclass(frozen=True, kw_only=True)
class Site:
    """What to patch. ``layer`` is 1-based; ``positions``/``heads`` are 0-based indices."""

    component: str
    layer: int | None = None
    positions: tuple[int, ...] | str | None = None
    heads: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise SiteError(f"unknown component {self.component!r}; valid: {', '.join(COMPONENTS)}")
        if isinstance(self.positions, list):
            object.__setattr__(self, "positions", tuple(self.positions))
        if isinstance(self.heads, list):
            object.__setattr__(self, "heads", tuple(self.heads))
        if self.component in HEAD_COMPONENTS and not self.heads:
            raise SiteError(f"{self.component} needs heads=(h, ...) (0-based head indices)")
        if self.component not in HEAD_COMPONENTS and self.heads is not None:
            raise SiteError(
                f"heads= only applies to {', '.join(HEAD_COMPONENTS)}, not {self.component}"
            )
        if self.component == "decoder.cross_kv" and self.positions is not None:
            raise SiteError("decoder.cross_kv patches every audio frame's key and value; "
                            "positions= is not supported")  # fmt: skip
        if self.layer is not None and (not isinstance(self.layer, int) or self.layer < 1):
            raise SiteError(f"layers are numbered from 1, got {self.layer!r}")

    @property
    def stack(self) -> str:
        return self.component.split(".")[0]

    def at(self, layer: int) -> Site:
        """This site at one layer."""
        return Site(
            component=self.component, layer=layer, positions=self.positions, heads=self.heads
        )

    def layers(self, n_layers: int) -> tuple[int, ...]:
        """The layers this site covers in a stack of ``n_layers``; checks the range."""
        if self.layer is None:
            return tuple(range(1, n_layers + 1))
        if self.layer > n_layers:
            raise SiteError(
                f"{self.component}: layer {self.layer} out of range; valid layers are 1..{n_layers}"
            )
        return (self.layer,)

    def check(self, *, n_layers: int, n_heads: int) -> None:
        """Validate against a model's shape; warn when the site is degenerate."""
        self.layers(n_layers)
        if self.heads is not None:
            bad = [h for h in self.heads if not 0 <= h < n_heads]
            if bad:
                raise SiteError(f"heads {bad} out of range; valid heads are 0..{n_heads - 1}")
        if self.component == "encoder.resid" and self.positions is None:
            warnings.warn(
                "encoder.resid at all positions is degenerate: the audio enters only through "
                "the conv front end, so restoring the whole residual recovers 1.0 at every "
                "layer. Use it as a sanity check, never as a result.",
                DegenerateSiteWarning,
                stacklevel=3,
            )

    def label(self) -> str:
        parts = [self.component, "L*" if self.layer is None else f"L{self.layer}"]
        if self.heads is not None:
            parts.append("H" + ",".join(map(str, self.heads)))
        if self.positions is not None:
            pos = self.positions
            parts.append(f"pos={pos}" if isinstance(pos, str) else f"pos[{len(pos)}]")
        return ".".join(parts[:1]) + "@" + ":".join(parts[1:])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("positions", "heads"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Site:
        return cls(**data)
