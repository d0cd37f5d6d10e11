"""Hooks a claims suite implements (in its ``conftest.py`` or a plugin module)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_listenkit_analysis(cell: Any) -> Any:
    """The analysis ``cell.analysis`` returns: computed (or read from the disk cache,
    ``cell.session.cache``) for ``cell.experiment``, ``cell.model``, ``cell.family`` in
    ``cell.profile``. Called once per process per (experiment, model, family). Skip
    (``pytest.skip``) with the reason when a model or voice is missing."""


@pytest.hookspec(firstresult=True)
def pytest_listenkit_scheduling_cost(cell: Any) -> float | None:
    """The relative cost of a cell's analysis (default 1): costly analyses run first, so
    the xdist workers stay busy to the end."""
