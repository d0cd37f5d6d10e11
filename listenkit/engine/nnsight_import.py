"""Import nnsight so that Praat (``praat-parselmouth``) still imports afterwards.

nnsight mounts a ``.save()`` on every object; pybind11 then refuses to define
parselmouth's own ``save`` methods ("Cannot overload existing non-function object
'save'"), so ``import nnsight; import parselmouth`` fails while the reverse order
works. Every listenkit import of nnsight goes through ``nnsight_module`` (parselmouth
first, when it is installed).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["nnsight_module"]


def nnsight_module(name: str = "nnsight") -> ModuleType:
    """``importlib.import_module(name)`` for an nnsight module, parselmouth loaded first."""
    try:
        import parselmouth  # noqa: F401 - must precede nnsight (see the module docstring)
    except ImportError:  # pragma: no cover - parselmouth is a dependency of listenkit
        pass
    return importlib.import_module(name)
