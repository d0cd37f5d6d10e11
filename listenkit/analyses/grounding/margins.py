"""Audio-text conflict metrics on Whisper: the text channel is the previous-text prompt.

For a conflict stimulus with flip spans ``a`` (what the audio says) and ``b``
(what the text says), teacher forced on the shared transcript prefix ``p``:

    m = log p(a | audio, prompt, p) - log p(b | audio, prompt, p)

(multi-token spans summed, each token conditioned on the span's earlier tokens).
The Text Dominance Ratio (ALME) is the share of stimuli with ``m < 0``: the model
prefers the text channel's version over what it hears.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.conflict import align_flip
from listenkit.stimuli.types import ConflictStimulus

__all__ = ["conflict_margins", "text_dominance_ratio"]


def conflict_margins(
    model: SpeechModel,
    stimuli: Sequence[ConflictStimulus],
    *,
    audio: str = "ref",
    text_channel: str | None = "conflict",
    batch_size: int = 8,
) -> np.ndarray:
    """``m`` per stimulus (nats). ``audio`` and ``text_channel`` pick which text's audio
    and which text as the prompt (``"ref"``, ``"conflict"``; ``None`` = no prompt)."""
    values: list[float] = []
    for start in range(0, len(stimuli), batch_size):
        chunk = stimuli[start : start + batch_size]
        waves = []
        prompts, with_a, with_b, prefix_lens = [], [], [], []
        for s in chunk:
            utt = s.ref_audio if audio == "ref" else s.conflict_audio
            if utt is None:
                raise ValueError(f"stimulus {s.stimulus_id!r} has no {audio} audio")
            waves.append(utt.audio)
            al = align_flip(s.ref_text, s.conflict_text, model.text_tokens)
            if not al.prefix_identical or not al.ref_span:
                raise ValueError(f"stimulus {s.stimulus_id!r}: flip not aligned ({al.reason})")
            text = {"ref": s.ref_text, "conflict": s.conflict_text, None: None}[text_channel]
            prompt = None if text is None else model.text_tokens(text)
            prompts += [prompt, prompt]
            prefix_lens.append(len(al.prefix))
            with_a.append(list(al.prefix) + list(al.ref_span))
            with_b.append(list(al.prefix) + list(al.conflict_span))
        features = model.encode(model.log_mel(waves))
        doubled = features.repeat_interleave(2, dim=0)
        transcripts = [t for pair in zip(with_a, with_b, strict=True) for t in pair]
        lps = model.token_logprobs_from_features(
            doubled, transcripts, prompts=prompts, append_eot=False
        )
        for i, n in enumerate(prefix_lens):
            values.append(float(lps[2 * i][n:].sum() - lps[2 * i + 1][n:].sum()))
    return np.asarray(values)


def text_dominance_ratio(
    margins: np.ndarray, stimuli: Sequence[ConflictStimulus]
) -> dict[str, tuple[float, int]]:
    """Share of stimuli with ``m < 0`` per flip type and ``"all"``: ``{key: (tdr, n)}``."""
    groups: dict[str, list[float]] = defaultdict(list)
    for m, s in zip(margins, stimuli, strict=True):
        groups[s.flip_type].append(m)
        groups["all"].append(m)
    return {k: (float(np.mean(np.asarray(v) < 0)), len(v)) for k, v in sorted(groups.items())}
