"""Stimulus sets cached on disk with a JSONL manifest, built once across processes.

A set lives in ``<cache>/stimuli/<kind>-<params hash>/``: ``manifest.jsonl`` (a header
line with the set's kind, parameters and tool versions, then one line per item
with its texts, generator parameters and the sha256 of each audio) and
``audio/<sha256>.npy``. A set is built into a temporary directory and renamed
into place under a file lock, so concurrent xdist workers build it once and nobody
reads a half-written set. Same parameters and seed -> byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from listenkit.models.cache import cache_root
from listenkit.stimuli.types import ConflictStimulus, Pair, Utterance

__all__ = ["StimulusSet", "cached_stimulus_set", "load_manifest", "write_manifest"]

Item = Pair | Utterance | ConflictStimulus
MANIFEST_VERSION = 1


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


def load_manifest(directory: Path) -> StimulusSet:
    """Read a set written by ``write_manifest``; every audio's sha256 is verified."""
    lines = (directory / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    items: list[Item] = []
    for line in lines[1:]:
        record = json.loads(line)
        kind = record.pop("type")
        if kind == "Utterance":
            items.append(Utterance.from_dict(record, _audio(directory, record)))
        elif kind == "Pair":
            items.append(
                Pair.from_dict(
                    record,
                    clean_audio=_audio(directory, record["clean"]),
                    corrupt_audio=_audio(directory, record["corrupt"]),
                )
            )
        elif kind == "ConflictStimulus":
            items.append(
                ConflictStimulus.from_dict(
                    record,
                    ref_audio=_audio(directory, record.get("ref_audio")),
                    conflict_audio=_audio(directory, record.get("conflict_audio")),
                )
            )
        else:
            raise ValueError(f"{directory}: unknown item type {kind!r}")
    if len(items) != header["n_items"]:
        raise ValueError(f"{directory}: manifest says {header['n_items']} items, has {len(items)}")
    extra = {k: v for k, v in header.items() if k not in ("kind", "params")}
    return StimulusSet(
        kind=header["kind"],
        params=header["params"],
        items=tuple(items),
        header=extra,
        directory=directory,
    )


def params_key(kind: str, params: Mapping[str, Any]) -> str:
    blob = json.dumps({"kind": kind, "params": dict(params)}, sort_keys=True).encode()
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
        return load_manifest(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if not (final / "manifest.jsonl").is_file():
            items, header = build()
            with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}.") as tmp:
                staging = Path(tmp) / "set"
                staging.mkdir()
                write_manifest(staging, kind, params, list(items), header)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(staging, final)
    return load_manifest(final)
