"""Pre-registered claims as pytest tests: the ``listenkit`` pytest plugin.

- ``Preregistration``: the TOML file, one shape per experiment; ``cells()`` is the grid;
- ``Cell``: a claim test's handle (identity, seeds, resamples, ``require``, ``judge``);
- ``listenkit.claims.ledger``: evidence folders, the ledger, its validation;
- ``listenkit.claims.plugin``: the hooks (registered as the ``pytest11`` entry point).

A suite provides analyses through the ``pytest_listenkit_analysis`` hook
(``listenkit.claims.hookspecs``); ``docs/writing-claims.md`` shows a complete claim.
"""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)

if TYPE_CHECKING:  # the public names (read by lazy_exports, type checkers and IDEs)
    from listenkit.claims.cell import Cell
    from listenkit.claims.preregistration import CellId, Preregistration, PreregistrationError
    from listenkit.claims.verdicts import VERDICTS, NotSupported
