"""Cache entries that cannot run code when loaded: JSON for structure, arrays as arrays.

``dump(value, path)`` writes one ``.npz`` file (written atomically): the arrays, and the
structure as JSON in its ``__tree__`` member; ``load(path)`` reads it back. Values are
built from ``None``, ``bool``, ``int``, ``float`` (NaN and infinities kept), ``str``,
``list``, ``tuple``, ``dict`` (any keys of these kinds),
numpy arrays and scalars (numeric and bool dtypes; object arrays are refused) and
listenkit's own dataclasses. A loader constructs only dataclasses of ``listenkit.``
modules (through their ``__init__``, from stored field values) and reads arrays with
``allow_pickle=False``: unlike a pickle, an entry is data, never code.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CodecError", "decode", "dump", "encode", "load"]


class CodecError(ValueError):
    """A value that cannot be stored, or an entry that cannot be read back."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _dataclass(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith("listenkit."):
        raise CodecError(f"refusing to load {name!r}: not a listenkit class")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not (
        isinstance(cls, type)
        and dataclasses.is_dataclass(cls)
        and f"{cls.__module__}:{cls.__qualname__}" == name
    ):
        raise CodecError(f"{name!r} is not a listenkit dataclass")
    return cls


def encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able tree for ``value``; arrays go into ``arrays`` (named a0, a1, ...)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return {"scalar": value.dtype.str, "value": encode(value.item(), arrays)}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise CodecError(f"array of dtype {value.dtype} cannot be stored")
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"array": name}
    if isinstance(value, list):
        return [encode(v, arrays) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [encode(v, arrays) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, arrays), encode(v, arrays)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = _name(type(value))
        if not name.startswith("listenkit."):
            raise CodecError(f"{name}: only listenkit dataclasses can be stored")
        fields = {f.name: encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}
        return {"dataclass": name, "fields": fields}
    raise CodecError(f"cannot store a value of type {type(value).__name__}")


def decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of ``encode``."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(v, arrays) for v in tree]
    if not isinstance(tree, dict) or len(tree) not in (1, 2):
        raise CodecError(f"unreadable node {str(tree)[:80]!r}")
    if "float" in tree:
        return float(tree["float"])
    if "array" in tree:
        return arrays[tree["array"]]
    if "scalar" in tree:
        return np.dtype(tree["scalar"]).type(decode(tree["value"], arrays))
    if "tuple" in tree:
        return tuple(decode(v, arrays) for v in tree["tuple"])
    if "dict" in tree:
        return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in tree["dict"]}
    if "dataclass" in tree:
        cls = _dataclass(tree["dataclass"])
        fields = {k: decode(v, arrays) for k, v in tree["fields"].items()}
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in fields.items() if k in init})
        for k, v in fields.items():
            if k not in init:
                object.__setattr__(obj, k, v)
        return obj
    raise CodecError(f"unreadable node {str(tree)[:80]!r}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump(value: Any, path: str | Path) -> None:
    """Write ``value`` to the ``.npz`` file ``path`` (atomically: a temporary file, then
    a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    tree = encode(value, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, __tree__=np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8), **arrays)
    _replace(path, buffer.getvalue())


def load(path: str | Path) -> Any:
    """Read an entry written by ``dump`` (``CodecError``, ``OSError`` or ``ValueError`` if
    it cannot)."""
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    tree = json.loads(arrays.pop("__tree__").tobytes().decode())
    return decode(tree, arrays)
