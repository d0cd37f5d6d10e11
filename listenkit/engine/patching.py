"""``run_patching``: one sweep engine over items, sites and layers, for both backends.

Denoising: source = clean, base = corrupt; noising: the reverse. The backends
(``engine.backends.hooks``, the default, and ``engine.backends.nnsight``) compute
per-item metric values of the source, base and patched runs for one batch; this
module validates the request, batches the items and checks the results.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, MutableMapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from listenkit.engine.batch import Batch, PatchItem, PatchResult, check_finite
from listenkit.engine.site_tables import OPENAI_WHISPER
from listenkit.engine.sites import DegenerateSiteWarning, Site, SiteError
from listenkit.models.speech_model import SpeechModel

__all__ = [
    "BACKENDS",
    "Progress",
    "degenerate_patch_deviation",
    "null_patch_deviation",
    "run_patching",
]

# True: a tqdm bar; False: silent; a callable: called with (items done, items in all)
# after every batch (the claims suite prints it past pytest's capture).
Progress = bool | Callable[[int, int], None]

BACKENDS = ("hooks", "nnsight")


def run_patching(
    model: SpeechModel,
    items: Sequence[PatchItem],
    sites: Sequence[Site],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    backend: str = "hooks",
    progress: Progress = True,
    encoder_memo: dict | None = None,
    done: MutableMapping[int, tuple] | None = None,
) -> list[PatchResult]:
    """Patch each site at each of its layers (or ``layers``) for every item.

    Returns per-item metric values of the source, base and patched runs. With only
    decoder sites, ``encoder_memo`` (a dict shared between calls) caches encoder
    outputs by audio sha256, so audio seen before is not encoded again (hooks backend).
    ``done`` (batch start -> (source [b], base [b], {site: patched [b, layers]})) holds
    finished batches: they are taken from it, not recomputed, and every new batch is
    added (a checkpoint to resume a killed sweep from).
    """
    if not items:
        raise ValueError("no items to patch")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique")
    site_layers: dict[Site, tuple[int, ...]] = {}
    for s in sites:
        if s.component not in OPENAI_WHISPER:
            raise SiteError(
                f"{s.component} is not a Whisper site; audio language models run through "
                "listenkit.analyses.grounding.audio_lm"
            )
        n = model.encoder_layers if s.stack == "encoder" else model.decoder_layers
        heads = model.heads if s.stack == "encoder" else model.module.dims.n_text_head
        s.check(n_layers=n, n_heads=heads)
        site_layers[s] = s.layers(n) if layers is None else tuple(layers)
        for layer in site_layers[s]:
            s.at(int(layer)).layers(n)  # range check with the valid range in the message
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    m_source = np.empty(len(items))
    m_base = np.empty(len(items))
    patched_values = {s: np.empty((len(items), len(site_layers[s]))) for s in sites}
    total = len(items) * sum(len(v) for v in site_layers.values())
    report = progress if callable(progress) else None
    with tqdm(total=total, disable=progress is not True, desc="patching", unit="run") as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            if done is not None and start in done:
                src, base, values = done[start]
            else:
                src, base, values = _run_batch(
                    model, Batch(model, chunk), sites, site_layers, backend, encoder_memo
                )
                if done is not None:
                    done[start] = (np.asarray(src), np.asarray(base),
                                   {s: np.asarray(values[s]) for s in sites})  # fmt: skip
            m_source[start : start + len(chunk)] = src
            m_base[start : start + len(chunk)] = base
            for s in sites:
                patched_values[s][start : start + len(chunk)] = values[s]
            bar.update(len(chunk) * sum(len(v) for v in site_layers.values()))
            if report is not None:
                report(start + len(chunk), len(items))
    for name, array in (("source metric", m_source), ("base metric", m_base)):
        check_finite(name, array, ids)
    for s in sites:
        check_finite(f"patched metric ({s.component})", patched_values[s], ids)
    return [
        PatchResult(
            site=s, layers=site_layers[s], source=m_source, base=m_base, patched=patched_values[s]
        )
        for s in sites
    ]


def _run_batch(model, batch, sites, site_layers, backend, encoder_memo):
    if backend == "hooks":
        from listenkit.engine.backends.hooks import run_batch_hooks

        return run_batch_hooks(model, batch, sites, site_layers, encoder_memo)
    from listenkit.engine.backends.nnsight import run_batch_nnsight

    return run_batch_nnsight(model, batch, sites, site_layers)


def null_patch_deviation(
    model: SpeechModel,
    items: Sequence[PatchItem],
    sites: Sequence[Site],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    backend: str = "hooks",
) -> dict[str, float]:
    """The null check: patch each item's base run into itself at every site and layer.

    Every patched metric must equal the base metric exactly (the effect is 0): a
    restart, position or head bug shows up here, where the whole-residual patch
    (which overwrites everything) cannot see it. Returns ``max |m_patched - m_base|``
    in nats per site component.
    """
    selfish = [PatchItem(id=it.id, source=it.base, base=it.base, position_sets=it.position_sets)
               for it in items]  # fmt: skip
    results = run_patching(
        model, selfish, sites, layers=layers, batch_size=batch_size, backend=backend,
        progress=False,
    )  # fmt: skip
    return {r.site.component: float(np.abs(r.patched - r.base[:, None]).max()) for r in results}


def degenerate_patch_deviation(
    model: SpeechModel,
    items: Sequence[PatchItem],
    *,
    site: str = "encoder.resid",
    batch_size: int = 8,
    backend: str = "hooks",
) -> float:
    """The degenerate check: patch the whole residual stream after block l (all
    positions) from the source run into the base run, at every layer.

    Everything downstream then is the source run, so every patched metric must equal the
    source metric: returns ``max |m_patched - m_source|`` in nats over items and layers.
    No floor is applied, so the check is never empty.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateSiteWarning)  # degenerate on purpose
        (result,) = run_patching(
            model, items, [Site(component=site)], batch_size=batch_size, backend=backend,
            progress=False,
        )  # fmt: skip
    return float(np.abs(result.patched - result.source[:, None]).max())
