"""Resume, don't redo: each analysis's raw results cached on disk.

A full-profile run takes one to several hours; killed at 90%, a rerun computes only
what is missing, and an unchanged rerun only re-renders the evidence. An entry is
keyed by everything that shapes its numbers:

- the analysis kind (E1, E2, E4-encoder-heads, ...), model, family and profile;
- the caller's ``salt`` (the claims plugin: the pre-registration's sha256 and the
  suite's own fixture code);
- the key parts the caller passes (the model's weights sha256, the stimulus manifest);
- the code (``code_sha256``: listenkit's ``.py`` files, version included), except the
  code that only renders or judges (``RENDER_ONLY``), so a better plot or ledger
  re-renders a finished run instead of recomputing it.

Any part changed -> another key -> recomputed, never reused, unless the caller names
an earlier commit's key inputs to adopt from (``adopt``: ``stage_origin``), which copies
the earlier entry and records where it came from. ``fresh=True`` ignores the cache (and
overwrites). Entries are ``.npz`` files (``listenkit.codec``:
data, never code) written atomically under ``<root>/analyses/``; an unreadable entry is
recomputed. One process computes an entry at a time (``<key>.npz.lock``, a ``filelock``
lock): a second run that needs the same entry says so, waits, and reads the first
one's result instead of computing it again.
"""

from __future__ import annotations

import functools
import hashlib
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from listenkit import checkpoint_file, codec
from listenkit._version import __version__
from listenkit.experiments.progress import announce
from listenkit.models.cache import sha256_file
from listenkit.stage_origin import (
    Origin,
    copy_atomic,
    origin_file,
    read_origin,
    write_origin,
)

__all__ = [
    "RENDER_ONLY",
    "AnalysisCache",
    "BatchCheckpoint",
    "checkpoint_section",
    "code_sha256",
    "resumed_seconds",
    "weights_sha256",
]

T = TypeVar("T")
PACKAGE = Path(__file__).resolve().parent.parent

# Code that never shapes an analysis's numbers: plots, pages, the claims plugin (ledger,
# verdicts, evidence files), progress lines.
RENDER_ONLY = ("report/", "claims/", "experiments/progress.py")


@functools.cache
def code_sha256(package: Path = PACKAGE, version: str = __version__) -> str:
    """sha256 over listenkit's ``version`` and source (relative path + bytes), without
    ``RENDER_ONLY`` (``package``: another checkout's ``listenkit/`` gives its hash)."""
    digest = hashlib.sha256(version.encode())
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(RENDER_ONLY):
            continue
        digest.update(relative.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def weights_sha256(module: Any) -> str:
    """sha256 over a torch module's state dict (names, shapes, dtypes, bytes); memoised
    on the module."""
    cached = getattr(module, "_listenkit_weights_sha256", None)
    if cached:
        return cached
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    value = digest.hexdigest()
    module._listenkit_weights_sha256 = value
    return value


def _read(path: Path) -> tuple[bool, Any]:
    try:
        return True, codec.load(path)
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile):
        return False, None  # missing, truncated or unreadable: recompute


class BatchCheckpoint(MutableMapping):
    """Finished batches of one long computation (batch start -> its results), written to
    disk after every batch, so that a killed run resumes at the next batch.

    The file also keeps the compute time spent on the computation so far: ``seconds`` =
    earlier processes' time up to their last written batch (``seconds_before``) + this
    process's time since it opened the checkpoint. A killed process's work after its last
    written batch is not counted; what a resumed process redoes before its first batch
    (e.g. E3's probe training) is counted again."""

    def __init__(self, path: Path, *, fresh: bool = False) -> None:
        self.path = path
        self._opened = time.perf_counter()
        ok, stored = (False, None) if fresh else _read(path)
        self._done, self.seconds_before = checkpoint_file.unpack(stored if ok else None)

    @property
    def seconds(self) -> float:
        """Compute seconds spent on this computation, across the processes that ran it."""
        return self.seconds_before + time.perf_counter() - self._opened

    def __getitem__(self, key):
        return self._done[key]

    def __setitem__(self, key, value) -> None:
        self._done[key] = value
        self._write()

    def __delitem__(self, key) -> None:
        del self._done[key]
        self._write()

    def __iter__(self):
        return iter(self._done)

    def __len__(self) -> int:
        return len(self._done)

    def _write(self) -> None:
        codec.dump(checkpoint_file.pack(self._done, self.seconds), self.path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def resumed_seconds(done: MutableMapping) -> float:
    """Seconds that earlier processes spent on the computation whose checkpoint is
    ``done`` (0 for a plain dict, i.e. without a cache): add it to this process's time."""
    return float(getattr(done, "seconds_before", 0.0))


def checkpoint_section(done: MutableMapping, name: str) -> MutableMapping[int, Any]:
    """The batches of ``done`` (a ``BatchCheckpoint`` or a dict) whose keys are
    ``f"{name}/{start}"``, as ``start -> batch``: one checkpoint for a stage that runs
    several batched computations (e.g. one sweep per site)."""
    return _Section(done, name)


class _Section(MutableMapping):
    def __init__(self, store: MutableMapping, name: str) -> None:
        self.store, self.prefix = store, f"{name}/"

    def __getitem__(self, key: int) -> Any:
        return self.store[self.prefix + str(key)]

    def __setitem__(self, key: int, value: Any) -> None:
        self.store[self.prefix + str(key)] = value

    def __delitem__(self, key: int) -> None:
        del self.store[self.prefix + str(key)]

    def __iter__(self):
        n = len(self.prefix)
        return (int(k[n:]) for k in self.store if isinstance(k, str) and k.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class AnalysisCache:
    """Analyses on disk under ``root/analyses`` (default: listenkit's cache folder).

    ``salt``: what else shapes every entry (e.g. the pre-registration's sha256);
    ``fresh``: recompute every entry this object is asked for (and overwrite it), except
    one stored after ``fresh_since`` (a Unix time: another worker of the same run);
    ``say``: where a waiting process says so (default: stderr);
    ``adopt``: earlier commits' key inputs; a missing entry (or batch checkpoint) found
    under one of their keys is copied to this key, recorded in ``origins``."""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        salt: str = "",
        fresh: bool = False,
        fresh_since: float | None = None,
        say: Callable[[str], None] = announce,
        adopt: tuple[Origin, ...] = (),
    ) -> None:
        if root is None:
            from listenkit.models.cache import cache_root

            root = cache_root()
        self.folder = Path(root) / "analyses"
        self.salt = salt
        self.fresh = fresh
        self.fresh_since = fresh_since
        self.say = say
        self.adopt = tuple(adopt)
        if adopt and fresh:
            raise ValueError("fresh recomputes every entry: there is nothing to adopt")
        # entry name -> its adoption record, for every adopted entry this object read;
        # adopted_reads: their names in the order read (once per read)
        self.origins: dict[str, dict[str, Any]] = {}
        self.adopted_reads: list[str] = []

    def key(self, kind: str, model: str, family: str, profile: str, **parts: str) -> str:
        return _key(self.salt, code_sha256(), (kind, model, family, profile), parts)

    def get(
        self,
        kind: str,
        model: str,
        family: str,
        profile: str,
        parts: dict[str, str],
        compute: Callable[..., T],
        *,
        batches: bool = False,
    ) -> T:
        """``compute()``'s result, from disk when an entry with the same key exists (and
        not ``fresh``), else computed and stored. With ``batches``, ``compute(done)`` gets
        a ``BatchCheckpoint`` under the same key (``.partial.npz``) to record finished
        batches in, dropped once the result is stored."""
        key = self.key(kind, model, family, profile, **parts)
        path = self.folder / f"{key}.npz"
        if path.is_file() and not self._stale(path):
            ok, stored = _read(path)
            if ok:
                return self._noted(path, stored)
        before = _mtime(path)
        with self._exclusive(path, key):
            # what another process stored meanwhile (when fresh: only if it is new)
            if not self._stale(path) or _mtime(path) != before:
                ok, stored = _read(path)
                if ok:
                    return self._noted(path, stored)
            if self._adopted(path, (kind, model, family, profile), parts):
                ok, stored = _read(path)
                if ok:
                    return self._noted(path, stored)
            return self._noted(path, self._compute_and_store(path, compute, batches=batches))

    def _adopted(self, path: Path, names: tuple[str, ...], parts: dict[str, str]) -> bool:
        """Copy the first origin's finished entry to ``path`` (True), or else its batch
        checkpoint (False: the stage resumes from it); without either, forget any old
        adoption record at ``path`` (False: computed here). An origin entry that another
        process is computing (its lock is held) is waited for. The record (the origin's
        entry, commit, key parts and the copy's sha256) is written before the copy."""
        partial = path.with_suffix(".partial.npz")
        for origin in self.adopt:
            old = self.folder / f"{_key(origin.salt, origin.code_sha256, names, parts)}.npz"
            old_partial = old.with_suffix(".partial.npz")
            if not (old.is_file() or old_partial.is_file()):
                continue
            with self._exclusive(old, old.stem):
                record = {"from": old.name, "from_commit": origin.commit, "parts": dict(parts)}
                if _read(old)[0]:
                    write_origin(path, record | {"partial": False, "sha256": sha256_file(old)})
                    copy_atomic(old, path)
                    partial.unlink(missing_ok=True)  # an adopted checkpoint, now superseded
                    self.say(f"{path.stem}: adopted from commit {origin.commit[:12]} ({old.name})")
                    return True
                if not partial.is_file() and _read(old_partial)[0]:
                    write_origin(
                        path, record | {"partial": True, "sha256": sha256_file(old_partial)}
                    )
                    copy_atomic(old_partial, partial)
                    self.say(
                        f"{path.stem}: resuming from commit {origin.commit[:12]}'s batch "
                        f"checkpoint ({old_partial.name})"
                    )
                    return False
        if self.fresh or not (partial.is_file() and read_origin(path)):
            origin_file(path).unlink(missing_ok=True)
        return False

    def _noted(self, path: Path, stored: T) -> T:
        record = read_origin(path)
        if record is not None:
            self.origins[path.stem] = record
            self.adopted_reads.append(path.stem)
        return stored

    @contextmanager
    def _exclusive(self, path: Path, key: str) -> Iterator[None]:
        """Hold ``<path>.lock``, saying so when another process holds it first."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{path}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.say(
                f"{key}: another process is computing it; waiting for its result "
                f"(lock {lock.lock_file})"
            )
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _stale(self, path: Path) -> bool:
        """Under ``fresh``: stored before this run (to be recomputed)."""
        if not self.fresh:
            return False
        mtime = _mtime(path)
        return self.fresh_since is None or mtime is None or mtime / 1e9 < self.fresh_since

    def _compute_and_store(self, path: Path, compute: Callable[..., T], *, batches: bool) -> T:
        done = BatchCheckpoint(path.with_suffix(".partial.npz"), fresh=self.fresh)
        if not done:  # nothing to resume from: an adopted checkpoint, if any, went unread
            origin_file(path).unlink(missing_ok=True)
        result = compute(done) if batches else compute()
        try:
            codec.dump(result, path)
        except codec.CodecError as err:  # keep the result: this run uses it, uncached
            warnings.warn(f"{path.name}: not cached ({err})", RuntimeWarning, stacklevel=3)
            return result
        done.discard()
        return result


def _key(salt: str, code: str, names: tuple[str, ...], parts: dict[str, str]) -> str:
    """``<kind>-<model>-<family>-<profile>-<first 20 hex of sha256(salt, code, parts)>``."""
    digest = hashlib.sha256(salt.encode())
    digest.update(code.encode())
    for name in sorted(parts):
        digest.update(f"{name}={parts[name]}".encode())
    return "-".join(names) + f"-{digest.hexdigest()[:20]}"


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.is_file() else None
