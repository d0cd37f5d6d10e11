"""Stage 3, engine: what is patched (sites, per-architecture site tables), on what
(items, scoring rows, batches), how it is scored (metrics), and how (hooks and
nnsight backends, the decoder K/V cache). ``run_patching`` is the one sweep loop."""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

_EXPORTS = {
    "COMPONENTS": "listenkit.engine.sites",
    "DegenerateSiteWarning": "listenkit.engine.sites",
    "Site": "listenkit.engine.sites",
    "SiteError": "listenkit.engine.sites",
    "PatchItem": "listenkit.engine.batch",
    "PatchResult": "listenkit.engine.batch",
    "RunInput": "listenkit.engine.batch",
    "ScoringRow": "listenkit.engine.batch",
    "run_patching": "listenkit.engine.patching",
    "logit_diff_rows": "listenkit.engine.metrics",
    "normalized_recovery": "listenkit.engine.metrics",
    "ref_logprob_rows": "listenkit.engine.metrics",
    "wer": "listenkit.engine.wer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "COMPONENTS",
    "DegenerateSiteWarning",
    "PatchItem",
    "PatchResult",
    "RunInput",
    "ScoringRow",
    "Site",
    "SiteError",
    "logit_diff_rows",
    "normalized_recovery",
    "ref_logprob_rows",
    "run_patching",
    "wer",
]

if TYPE_CHECKING:
    from listenkit.engine.batch import PatchItem, PatchResult, RunInput, ScoringRow
    from listenkit.engine.metrics import logit_diff_rows, normalized_recovery, ref_logprob_rows
    from listenkit.engine.patching import run_patching
    from listenkit.engine.sites import COMPONENTS, DegenerateSiteWarning, Site, SiteError
    from listenkit.engine.wer import wer
