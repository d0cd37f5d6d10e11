"""LoRA on Whisper's encoder attention value projections, with ``peft``.

As in the paper's source (arXiv 2509.08454): LoRA of rank ``r`` and scaling
``alpha / r`` on every encoder layer's ``attn.value``, so ``W_v' = W_v + (alpha / r) B A``
with ``A: r x d`` (Kaiming init) and ``B: d x r`` (zero init: an untrained adapter is
the identity). Adapters are real ``peft`` objects, saved with ``save_pretrained``.
For patching, the adapter is merged into a copy of the model's weights
(``merge_and_unload``), so every site and backend of the engine runs on the adapted
model unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from listenkit.models.speech_model import SpeechModel

__all__ = ["LoraSpec", "adapted_model", "attach_lora", "load_adapter"]


@dataclass(frozen=True)
class LoraSpec:
    """Where and how big: ``target`` is a regex over the encoder's module names."""

    r: int = 32
    alpha: int = 64
    target: str = r"blocks\.\d+\.attn\.value"
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, target_modules=self.target,
            lora_dropout=self.dropout, bias="none",
        )  # fmt: skip


def attach_lora(model: SpeechModel, spec: LoraSpec, *, seed: int):
    """A ``peft`` model around a *copy* of ``model``'s encoder with fresh adapters (``A``
    drawn from ``torch.Generator`` seeded with ``seed``; ``B = 0``). Only the adapters
    are trainable; ``model`` itself is never modified."""
    from peft import get_peft_model

    encoder = copy.deepcopy(model.module.encoder)
    for p in encoder.parameters():
        p.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return get_peft_model(encoder, spec.config())
        except ValueError as err:
            if "not found" not in str(err):
                raise
            raise ValueError(
                f"LoRA target {spec.target!r} matched no module of the encoder (module names "
                "look like 'blocks.0.attn.value')"
            ) from err


def load_adapter(model: SpeechModel, directory: Path):
    """The ``peft`` encoder saved in ``directory`` (``save_pretrained``), on a copy of
    ``model``'s encoder."""
    from peft import PeftModel

    encoder = copy.deepcopy(model.module.encoder)
    return PeftModel.from_pretrained(encoder, str(directory), is_trainable=False)


def adapted_model(model: SpeechModel, peft_encoder, *, name: str) -> SpeechModel:
    """A new ``SpeechModel``: ``model``'s decoder with the adapter merged into a copy of
    the encoder (``W + (alpha / r) B A``). Neither ``model`` nor ``peft_encoder`` changes."""
    merged_encoder = copy.deepcopy(peft_encoder).merge_and_unload()
    module = copy.deepcopy(model.module)
    module.__dict__.pop("_listenkit_weights_sha256", None)  # a cached hash of the old weights
    module.encoder = merged_encoder.eval()
    for p in merged_encoder.parameters():
        p.requires_grad_(False)
    return SpeechModel(name=name, module=module, source=f"{model.source} + LoRA ({name})")
