"""Scheduling claims under pytest-xdist: one analysis per worker, longest first.

The tests of one analysis (its module and parameters, e.g.
``claims/test_e1_listen_layer.py[whisper-base-noise]``) go to one worker, so the
analysis is computed once; the costliest analyses start first.
"""

from __future__ import annotations

import pytest

__all__ = ["claim_scope", "scheduler"]


def claim_scope(nodeid: str) -> str:
    """The scheduling unit of a claims test: ``path::test[params]`` -> ``path[params]``
    (the tests that share one analysis); other node ids are their own unit."""
    path, _, rest = nodeid.partition("::")
    if "[" not in rest:
        return nodeid
    return f"{path}[{rest.split('[', 1)[1]}"


def scheduler(config: pytest.Config, log):
    """xdist's load-scope scheduling on ``claim_scope`` (xdist's own ``loadgroup`` relies
    on the ``xdist_group`` mark, which pytest 9.2 no longer honours: pytest-xdist issue
    1386)."""
    from xdist.scheduler import LoadScopeScheduling

    class ClaimScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return claim_scope(nodeid)

    return ClaimScopeScheduling(config, log)
