"""The paper's experiments as pure functions: (model, stimuli, pre-registration section,
cache) -> typed results, and the claim statistics on those results.

- ``e1`` (listen layer), ``e2`` (grounding coefficient, E5 failures), ``e3`` (LoRA
  shift), ``e4`` (listen heads): each has ``analyse`` and one function per claim;
- ``cache``: the keyed, locked disk cache of analyses (``AnalysisCache``; entries are
  data, never code: ``codec``);
- ``progress``: throttled progress lines for long analyses;
- ``measured``: ``Measured`` (what a claim statistic returns) and ``Requirement``.

No pytest here: the claims plugin (``listenkit.claims``) sits above.
"""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)

if TYPE_CHECKING:  # the public names (read by lazy_exports, type checkers and IDEs)
    from listenkit.experiments.cache import AnalysisCache, BatchCheckpoint
    from listenkit.experiments.measured import Measured, Requirement
    from listenkit.experiments.progress import reporter
