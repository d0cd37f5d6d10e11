"""Word error rate on Whisper-normalised text (jiwer).

``wer(ref, hyp) = (S + D + I) / N`` over words after openai-whisper's
``EnglishTextNormalizer`` (lower case, punctuation removed, spelled numbers
written as digits, British spellings unified), followed by one addition: a clock time
``h.mm`` or ``h:mm`` is written ``hmm``, so "seven thirty" (-> "730") and "7.30" agree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import jiwer

__all__ = ["normalize_text", "wer"]


@functools.cache
def _normalizer():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_text(text: str) -> str:
    """Whisper's English normalisation of ``text``."""
    return re.sub(r"\b(\d{1,2})[.:](\d{2})\b", r"\1\2", _normalizer()(text))


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float | list[float]:
    """WER of each hypothesis against its reference (a float, or a list for sequences).
    An empty normalised reference is an error (WER undefined)."""
    single = isinstance(reference, str)
    refs = [reference] if single else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    out = []
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = normalize_text(ref), normalize_text(hyp)
        if not r.strip():
            raise ValueError(f"reference {ref!r} is empty after normalisation: WER undefined")
        out.append(float(jiwer.wer(r, h if h.strip() else "<empty>")))
    return out[0] if single else out
