"""Metrics as pure functions, with their formulas.

- ``ref_logprob``: ``m = sum_t log p(y_t | y_<t, audio)`` over a reference transcript's
  tokens and the final end-of-text (teacher forced), in nats.
- ``logit_diff``: ``m = log p(a | prefix, audio) - log p(b | prefix, audio)`` for two
  candidate continuations; multi-token spans are summed, each token conditioned on
  the span's earlier tokens.
- ``normalized_recovery``: ``r = (m_patched - m_base) / (m_source - m_base)`` per item;
  the floor is signed (v2): an item is included only if ``s (m_source - m_base) >= floor``
  with ``s`` the expected direction (+1 when the source run should score higher, as
  clean over corrupt in denoising; -1 in noising). Never divided by ~0.
- ``grounding_coefficient``: ``gc = dA / (dA + dT)`` (``listenkit.stats.grounding``).
- ``wer``: word error rate on Whisper-normalised text (``listenkit.engine.wer``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from listenkit.engine.batch import ScoringRow
from listenkit.engine.wer import wer
from listenkit.models.speech_model import SpeechModel
from listenkit.stats.grounding import grounding_coefficient

__all__ = [
    "grounding_coefficient",
    "logit_diff_rows",
    "normalized_recovery",
    "ref_logprob_rows",
    "wer",
]


def ref_logprob_rows(
    model: SpeechModel, transcript: Sequence[int], *, prompt: Sequence[int] | None = None
) -> tuple[ScoringRow, ...]:
    """Rows for ``ref_logprob``: start sequence (after an optional prompt), transcript, EOT."""
    head = model.prompt_prefix(prompt)
    return (ScoringRow(tuple(head + list(transcript) + [model.tokenizer.eot]), len(head)),)


def logit_diff_rows(
    model: SpeechModel,
    prefix: Sequence[int],
    a: Sequence[int],
    b: Sequence[int],
    *,
    prompt: Sequence[int] | None = None,
) -> tuple[ScoringRow, ...]:
    """Rows for ``logit_diff``: ``+ log p(a | prefix)`` and ``- log p(b | prefix)``."""
    if not a or not b:
        raise ValueError("both continuations need at least one token")
    head = model.prompt_prefix(prompt) + list(prefix)
    return (
        ScoringRow(tuple(head + list(a)), len(head), 1.0),
        ScoringRow(tuple(head + list(b)), len(head), -1.0),
    )


def normalized_recovery(
    patched: np.ndarray,
    base: np.ndarray,
    source: np.ndarray,
    *,
    floor: float,
    direction: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``(r, included)``: ``r[i, l] = (patched[i, l] - base[i]) / (source[i] - base[i])``,
    NaN for excluded items; ``included[i] = direction * (source[i] - base[i]) >= floor``."""
    if floor <= 0:
        raise ValueError(f"the exclusion floor must be positive, got {floor}")
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    gap = np.asarray(source, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    included = direction * gap >= floor
    r = np.full(np.shape(patched), np.nan)
    r[included] = (patched[included] - base[included, None]) / gap[included, None]
    return r, included
