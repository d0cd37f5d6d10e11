"""Stimulus sets cached on disk with a JSONL manifest, built once across processes.

A set lives in ``<cache>/stimuli/<kind>-<params hash>/``: ``manifest.jsonl`` (a header
line with the set's kind, parameters and tool versions, then one line per item
with its texts, generator parameters and the sha256 of each audio) and
``audio/<sha256>.npy``. A set is built into a temporary directory and renamed
into place under a file lock, so concurrent xdist workers build it once and nobody
reads a half-written set. Same parameters and seed -> byte-identical files.

Every load verifies the manifest and each audio's sha256; a set that fails (an
empty or truncated manifest, a missing or altered audio file) is rebuilt with a
``CacheWarning``, once, under the same lock. ``GENERATION`` is part of the cache
key: it changes whenever the generators change what they make for the same
parameters (2: noisy mixtures are scaled into [-1, 1]).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from listenkit.models.cache import CacheWarning, cache_root
from listenkit.stimuli.types import ConflictStimulus, Pair, Utterance

__all__ = [
    "StimulusCacheError",
    "StimulusSet",
    "cached_stimulus_set",
    "load_manifest",
    "write_manifest",
]

Item = Pair | Utterance | ConflictStimulus
MANIFEST_VERSION = 1
GENERATION = 2


class StimulusCacheError(ValueError):
    """A cached stimulus set that cannot be read back as written (empty, truncated or
    altered manifest; a missing or altered audio file)."""


@dataclass(frozen=True, kw_only=True)
class StimulusSet:
    """Items of one kind plus where they came from."""

    kind: str
    params: Mapping[str, Any]
    items: tuple[Item, ...]
    header: Mapping[str, Any] = field(default_factory=dict)
    directory: Path | None = None

    @property
    def manifest_sha256(self) -> str:
        if self.directory is None:
            raise ValueError("this set was not written to disk")
        return hashlib.sha256((self.directory / "manifest.jsonl").read_bytes()).hexdigest()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]


def _utterances(item: Item) -> list[Utterance]:
    if isinstance(item, Utterance):
        return [item]
    if isinstance(item, Pair):
        return [item.clean, item.corrupt]
    return [u for u in (item.ref_audio, item.conflict_audio) if u is not None]


def _item_type(item: Item) -> str:
    return type(item).__name__


def write_manifest(
    directory: Path, kind: str, params: Mapping[str, Any], items: Sequence[Item], header: Mapping
) -> None:
    """Write ``manifest.jsonl`` and ``audio/*.npy`` for ``items`` into ``directory``."""
    audio_dir = directory / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "manifest_version": MANIFEST_VERSION,
                "kind": kind,
                "params": dict(params),
                **dict(header),
                "n_items": len(items),
            },
            sort_keys=True,
        )
    ]
    for item in items:
        for utt in _utterances(item):
            target = audio_dir / f"{utt.sha256}.npy"
            if not target.exists():
                np.save(target, np.asarray(utt.audio, dtype="<f4"), allow_pickle=False)
        record = {"type": _item_type(item), **item.to_dict(inline_audio=False)}
        lines.append(json.dumps(record, sort_keys=True))
    (directory / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _audio(directory: Path, record: Mapping[str, Any] | None) -> np.ndarray | None:
    if record is None:
        return None
    return np.load(directory / "audio" / f"{record['sha256']}.npy", allow_pickle=False)


def _item(directory: Path, record: dict) -> Item:
    kind = record.pop("type")
    if kind == "Utterance":
        return Utterance.from_dict(record, _audio(directory, record))
    if kind == "Pair":
        return Pair.from_dict(
            record,
            clean_audio=_audio(directory, record["clean"]),
            corrupt_audio=_audio(directory, record["corrupt"]),
        )
    if kind == "ConflictStimulus":
        return ConflictStimulus.from_dict(
            record,
            ref_audio=_audio(directory, record.get("ref_audio")),
            conflict_audio=_audio(directory, record.get("conflict_audio")),
        )
    raise StimulusCacheError(f"{directory}: unknown item type {kind!r}")


def load_manifest(directory: Path) -> StimulusSet:
    """Read a set written by ``write_manifest``; every audio's sha256 is verified.

    Raises ``StimulusCacheError`` (saying what is wrong) for an empty or truncated
    manifest and for a missing, unreadable or altered audio file."""
    path = Path(directory) / "manifest.jsonl"
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise StimulusCacheError(f"{path}: cannot read the manifest ({err})") from err
    if not lines:
        raise StimulusCacheError(f"{path}: the manifest is empty")
    items: list[Item] = []
    try:
        header = json.loads(lines[0])
        for number, line in enumerate(lines[1:], start=2):
            try:
                items.append(_item(directory, json.loads(line)))
            except (OSError, ValueError, KeyError) as err:
                raise StimulusCacheError(f"{path}, line {number}: {err}") from err
    except json.JSONDecodeError as err:
        raise StimulusCacheError(f"{path}: truncated or corrupt manifest ({err})") from err
    if not isinstance(header, dict) or "n_items" not in header:
        raise StimulusCacheError(f"{path}: the first line is not a manifest header")
    if len(items) != header["n_items"]:
        raise StimulusCacheError(
            f"{path}: truncated: the header says {header['n_items']} items, found {len(items)}"
        )
    extra = {k: v for k, v in header.items() if k not in ("kind", "params")}
    return StimulusSet(
        kind=header["kind"],
        params=header["params"],
        items=tuple(items),
        header=extra,
        directory=directory,
    )


def params_key(kind: str, params: Mapping[str, Any]) -> str:
    blob = json.dumps(
        {"kind": kind, "params": dict(params), "generation": GENERATION}, sort_keys=True
    ).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


def cached_stimulus_set(
    kind: str,
    params: Mapping[str, Any],
    build: Callable[[], tuple[Iterable[Item], Mapping[str, Any]]],
) -> StimulusSet:
    """Load the set for ``(kind, params)`` from the cache, building it once if absent.

    ``build()`` returns ``(items, header)``; ``header`` (tool versions, drop counts, ...)
    goes into the manifest's first line and must be deterministic.
    """
    final = cache_root() / "stimuli" / params_key(kind, params)
    if (final / "manifest.jsonl").is_file():
        try:
            return load_manifest(final)
        except StimulusCacheError:
            pass  # rebuilt below, under the lock (another worker may be doing it)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "manifest.jsonl").is_file():
            try:
                return load_manifest(final)
            except StimulusCacheError as err:
                warnings.warn(
                    f"stimulus cache entry failed verification, rebuilding it: {err}",
                    CacheWarning,
                    stacklevel=2,
                )
        items, header = build()
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}.") as tmp:
            staging = Path(tmp) / "set"
            staging.mkdir()
            write_manifest(staging, kind, params, list(items), header)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
    return load_manifest(final)
