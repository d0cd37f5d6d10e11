"""Stage 3, engine: what is patched (sites, per-architecture site tables), on what
(items, scoring rows, batches), how it is scored (metrics), and how (hooks and
nnsight backends, the decoder K/V cache). ``run_patching`` is the one sweep loop."""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)

if TYPE_CHECKING:  # the public names (read by lazy_exports, type checkers and IDEs)
    from listenkit.engine.batch import PatchItem, PatchResult, RunInput, ScoringRow
    from listenkit.engine.metrics import logit_diff_rows, normalized_recovery, ref_logprob_rows
    from listenkit.engine.patching import run_patching
    from listenkit.engine.sites import COMPONENTS, DegenerateSiteWarning, Site, SiteError
    from listenkit.engine.wer import wer
