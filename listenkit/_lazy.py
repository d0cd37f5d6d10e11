"""Lazy re-exports for package ``__init__`` modules (PEP 562 module ``__getattr__``).

A package lists its public names once, as the imports of its ``if TYPE_CHECKING:``
block (which type checkers and IDEs read); ``lazy_exports`` reads that block (``ast``,
nothing is executed) and imports a name's module on first access. ``import
listenkit`` then costs nothing until a name is used: ``listenkit.load_model`` imports
``listenkit.models.loading`` (and torch) on first access, ``listenkit.stats`` stays
numpy only.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["exports_of", "lazy_exports"]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def exports_of(path: str | Path) -> dict[str, str]:
    """name -> module of the ``from module import name`` lines under ``if TYPE_CHECKING:``."""
    exports = {}
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        exports[alias.asname or alias.name] = statement.module
    return exports


def lazy_exports(
    package: str,
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` from its TYPE_CHECKING block."""
    exports = exports_of(sys.modules[package].__file__)

    def __getattr__(name: str) -> object:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__, sorted(exports)
