"""Trained adapters cached on disk: trained once, reused by every later run and worker.

An entry lives under ``<listenkit cache>/adapters/<name>-<key>/`` with the ``peft``
adapter (``save_pretrained``: ``adapter_config.json``, ``adapter_model.safetensors``),
the head's state dict (``head.pt``, when there is one), the training log
(``training.json``) and ``files.json``: the sha256 of every other file. The key is
the sha256 of the base model's weights, the training manifest's sha256 and the
recipe (optimiser settings, LoRA spec, family), listenkit's version and the training
code. A ``FileLock`` makes concurrent pytest-xdist workers train once; a killed
training resumes from its ``TrainingCheckpoint`` (beside the entry, every 10 steps); an entry whose
files do not match ``files.json`` (tampered, truncated) is rebuilt with a
``CacheWarning``. Training is seeded, but its float sums depend on torch's thread count:
two runs with different thread counts can differ in the last bits, so the first run's
adapter (cached) is the one every later run uses.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from listenkit._version import __version__
from listenkit.analyses.adaptation.checkpoint import TrainingCheckpoint
from listenkit.analyses.adaptation.lora import load_adapter
from listenkit.analyses.adaptation.readout import ProsodyHead
from listenkit.analyses.adaptation.training import TrainingLog
from listenkit.models.cache import CacheWarning, cache_root, sha256_file
from listenkit.models.speech_model import SpeechModel

__all__ = ["Trained", "adapter_key", "cached_training"]


@dataclass
class Trained:
    """What a training run leaves: the ``peft`` encoder (or None: frozen), the head (or
    None: ASR), the log, and whether it came from the cache."""

    peft_encoder: Any
    head: ProsodyHead | None
    log: TrainingLog
    from_cache: bool = False
    directory: Path | None = None


def _training_code_sha256() -> str:
    """sha256 of the code that trains (so an edited recipe implementation retrains)."""
    digest = hashlib.sha256()
    for name in ("checkpoint.py", "lora.py", "readout.py", "training.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def adapter_key(weights_sha256: str, manifest_sha256: str, recipe: Mapping[str, Any]) -> str:
    """sha256 (first 20 hex digits) of the base weights' and the training manifest's
    sha256, the recipe, listenkit's version and the training code."""
    blob = json.dumps(
        {"weights": weights_sha256, "manifest": manifest_sha256, "recipe": dict(recipe),
         "listenkit": __version__, "code": _training_code_sha256()},
        sort_keys=True,
    ).encode()  # fmt: skip
    return hashlib.sha256(blob).hexdigest()[:20]


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "files.json"
    }


def _save(directory: Path, trained: Trained) -> None:
    if trained.peft_encoder is not None:
        trained.peft_encoder.save_pretrained(str(directory / "adapter"))
    if trained.head is not None:
        state = {k: v.detach().cpu() for k, v in trained.head.state_dict().items()}
        torch.save(state, directory / "head.pt")
    (directory / "training.json").write_text(json.dumps(trained.log.to_dict(), indent=1))
    (directory / "files.json").write_text(json.dumps(_digest(directory), indent=1))


def _load(directory: Path, model: SpeechModel, n_classes: int | None) -> Trained:
    recorded = json.loads((directory / "files.json").read_text())
    actual = _digest(directory)
    if recorded != actual:
        changed = sorted(set(recorded.items()) ^ set(actual.items()))
        raise ValueError(f"files differ from files.json: {[name for name, _ in changed][:4]}")
    peft_encoder = (
        load_adapter(model, directory / "adapter") if (directory / "adapter").is_dir() else None
    )
    head = None
    if (directory / "head.pt").is_file():
        if n_classes is None:
            raise ValueError("a cached head needs n_classes")
        head = ProsodyHead(model.d_model, n_classes).to(model.device)
        head.load_state_dict(torch.load(directory / "head.pt", weights_only=True))
        head.eval()
    log = TrainingLog.from_dict(json.loads((directory / "training.json").read_text()))
    return Trained(peft_encoder, head, log, from_cache=True, directory=directory)


def cached_training(
    name: str,
    key: str,
    model: SpeechModel,
    train: Callable[[TrainingCheckpoint], Trained],
    *,
    n_classes: int | None = None,
    root: Path | None = None,
) -> Trained:
    """Load entry ``<name>-<key>`` or run ``train(checkpoint)`` once (under a lock) and
    store it. ``checkpoint`` (``.<name>-<key>.checkpoint.pt`` beside the entry) is where
    the trainer saves its state as it goes: a killed run resumes there; it is removed
    once the entry is stored."""
    final = (root or cache_root() / "adapters") / f"{name}-{key}"
    final.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = TrainingCheckpoint(final.parent / f".{final.name}.checkpoint.pt")
    with FileLock(str(final) + ".lock"):
        if (final / "files.json").is_file():
            try:
                return _load(final, model, n_classes)
            except (ValueError, OSError, RuntimeError, json.JSONDecodeError) as err:
                warnings.warn(
                    f"adapter cache entry {final.name} failed verification, retraining: {err}",
                    CacheWarning,
                    stacklevel=2,
                )
        trained = train(checkpoint)
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}.") as tmp:
            staging = Path(tmp) / "entry"
            staging.mkdir()
            _save(staging, trained)
            if final.exists():
                shutil.rmtree(final)
            shutil.move(str(staging), final)
        checkpoint.discard()
    trained.directory = final
    return trained
