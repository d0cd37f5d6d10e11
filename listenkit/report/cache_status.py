"""Where a long run stands, read from its analysis cache (``listenkit status``).

A full-profile run is killed and resumed across sessions; its cache says what is done.
Each entry of ``<cache>/analyses`` is one stage of one analysis
(``{kind}-{model}-{family}-{profile}-{key}``):

- ``done``: the stage's result is stored (``.npz``);
- ``partial``: a batch checkpoint (``.partial.npz``) holds this many finished batches,
  computed in this much time (summed over the processes that ran it);
- ``running``: a process holds the stage's lock now (it is computing it).

Trained adapters (``<cache>/adapters``) are listed by name.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from listenkit import checkpoint_file, codec
from listenkit.stage_origin import read_origin

__all__ = ["StageStatus", "cache_status", "format_status"]

_NAME = re.compile(
    r"^(?P<head>.+)-(?P<profile>[a-z]+)-(?P<key>[0-9a-f]{20})(?P<partial>\.partial)?\.npz$"
)
_MODEL = re.compile(r"-(?P<model>whisper-[a-z0-9.]+(?:-v\d)?|qwen2-audio-7b|planted[\w.]*)-")


@dataclass(frozen=True)
class StageStatus:
    """One cache entry: ``state`` is ``done``, ``partial`` or ``running`` (a lock is held
    and nothing is stored yet); ``batches``: finished batches of a partial entry and
    ``seconds`` their compute time (None when the checkpoint kept none);
    ``age_s``: seconds since the entry (or its checkpoint) was last written (None for a
    running stage with nothing written yet); ``adopted_from``: the commit an adopted
    entry (or checkpoint) was copied from (``<key>.origin.json``), else None."""

    kind: str
    model: str
    family: str
    profile: str
    key: str
    state: str
    batches: int | None
    age_s: float | None
    running: bool
    seconds: float | None = None
    adopted_from: str | None = None


def _adopted_from(stored: Path) -> str | None:
    record = read_origin(stored)
    return None if record is None or "from_commit" not in record else str(record["from_commit"])


def _held(lock_path: Path) -> bool:
    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _split(head: str) -> tuple[str, str, str]:
    """(kind, model, family) of ``{kind}-{model}-{family}``: the model is the first known
    model name between dashes (else the part after the kind's first two pieces)."""
    match = _MODEL.search(head)
    if match:
        return head[: match.start()], match["model"], head[match.end() :]
    parts = head.split("-")
    return "-".join(parts[:2]), parts[2] if len(parts) > 2 else "", "-".join(parts[3:])


def _batches(path: Path) -> tuple[int | None, float | None]:
    """(finished batches, compute seconds so far) of a checkpoint; (None, None) while it
    is being rewritten; seconds None for a format-1 file (it kept no time)."""
    try:
        stored = codec.load(path)
    except Exception:  # a checkpoint being rewritten: count unknown
        return None, None
    batches, seconds = checkpoint_file.unpack(stored)
    return (len(batches), seconds or None) if isinstance(stored, dict) else (None, None)


def cache_status(root: str | Path, *, now: float | None = None) -> list[StageStatus]:
    """Every stage under ``root/analyses``, sorted by model, family, kind."""
    folder = Path(root) / "analyses"
    if not folder.is_dir():
        raise FileNotFoundError(f"no analysis cache at {folder}")
    now = time.time() if now is None else now
    found: dict[str, StageStatus] = {}
    names = {p.name for p in folder.iterdir()}
    for lock_name in sorted(n for n in names if n.endswith(".npz.lock")):
        stored = lock_name.removesuffix(".lock")
        partial = stored.removesuffix(".npz") + ".partial.npz"
        if stored not in names and partial not in names:
            names.add(stored + ".pending")  # a lock with nothing stored yet
    for name in sorted(names):
        pending = name.endswith(".pending")
        match = _NAME.match(name.removesuffix(".pending"))
        if match is None:
            continue
        stored = folder / f"{match['head']}-{match['profile']}-{match['key']}.npz"
        if match["partial"] and stored.is_file():
            continue  # finished meanwhile: the checkpoint is left over
        kind, model, family = _split(match["head"])
        path = folder / name.removesuffix(".pending")
        running = _held(Path(f"{stored}.lock"))
        if pending and not running:
            continue  # an old lock file: nothing stored, nobody computing
        state = "running" if pending else ("partial" if match["partial"] else "done")
        age = max(now - path.stat().st_mtime, 0.0) if path.exists() else None
        batches, seconds = _batches(path) if state == "partial" else (None, None)
        found[str(stored)] = StageStatus(
            kind=kind, model=model, family=family, profile=match["profile"],
            key=match["key"], state=state,
            batches=batches, seconds=seconds,
            age_s=age, running=running, adopted_from=_adopted_from(stored),
        )  # fmt: skip
    return sorted(found.values(), key=lambda s: (s.model, s.family, s.profile, s.kind))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _age(seconds: float) -> str:
    return f"{_duration(seconds)} ago"


def format_status(stages: list[StageStatus], adapters: list[str] = ()) -> str:
    """One block per (model, family, profile), one line per stage with the start of its
    key (entries of another code or pre-registration version have another key)."""
    if not stages and not adapters:
        return "the cache holds no analyses yet\n"
    lines: list[str] = []
    group = None
    width = max((len(s.kind) for s in stages), default=0) + 2
    for s in stages:
        if (s.model, s.family, s.profile) != group:
            group = (s.model, s.family, s.profile)
            lines.append(f"{s.model} {s.family} ({s.profile})")
        what = s.state
        if s.state == "partial":
            what += f": {s.batches if s.batches is not None else '?'} batches"
            if s.seconds is not None:
                what += f" in {_duration(s.seconds)}"
        if s.adopted_from:
            what += f" (adopted from {s.adopted_from[:7]})"
        if s.running and s.state != "running":
            what += ", running"
        written = "" if s.age_s is None else f"written {_age(s.age_s)}"
        lines.append(f"  {s.kind:<{width}}{s.key[:8]}  {what:<30} {written}".rstrip())
    if adapters:
        lines.append(f"trained adapters ({len(adapters)})")
        lines += [f"  {name}" for name in adapters]
    return "\n".join(lines) + "\n"
