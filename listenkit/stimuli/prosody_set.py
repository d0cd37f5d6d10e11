"""Synthetic prosody classes (an SER stand-in for E3, not emotion) as cached stimulus sets.

Each sentence is spoken once by a Piper voice and rendered in every class of
``listenkit.stimuli.prosody.PROSODY_CLASSES`` by Praat (pitch median and range, same
timing, same RMS level). Utterance ids are ``prosody/<sentence>/<class>``; ``meta``
holds ``class``, ``label`` (the class index) and ``sentence`` (its text-bank text
index within ``texts``). ``prosody_pairs`` turns a set into minimal pairs
(class ``c``, neutral) of the same sentence, for patching.
"""

from __future__ import annotations

from collections.abc import Sequence

from listenkit.stimuli.pairs import _check_texts, _versions, _voice
from listenkit.stimuli.prosody import (
    PRAAT_SEED,
    PROSODY_CLASSES,
    envelope_correlation,
    prosody_class,
)
from listenkit.stimuli.store import StimulusSet, cached_stimulus_set
from listenkit.stimuli.types import Pair, Utterance

__all__ = ["PROSODY_LABELS", "prosody_pairs", "prosody_utterances"]

PROSODY_LABELS: tuple[str, ...] = tuple(PROSODY_CLASSES)  # label i = PROSODY_LABELS[i]


def prosody_utterances(
    texts: Sequence[str], *, voice: str = "piper:joe", rms: float = 0.05
) -> StimulusSet:
    """Every sentence in every prosody class: ``len(texts) * 4`` utterances, ordered by
    sentence then class."""
    texts = _check_texts(texts)
    params = {"texts": texts, "voice": voice, "rms": float(rms), "classes": PROSODY_CLASSES,
              "praat_seed": PRAAT_SEED}  # fmt: skip

    def build():
        import parselmouth

        tts = _voice(voice)
        items = []
        for i, text in enumerate(texts):
            spoken = tts.synthesize(text)
            for label, name in enumerate(PROSODY_LABELS):
                items.append(
                    Utterance(
                        id=f"prosody/{i:04d}/{name}",
                        text=text,
                        audio=prosody_class(spoken, name, rms=rms),
                        meta={"class": name, "label": label, "sentence": i, "voice": voice},
                    )
                )
        versions = _versions(tts) | {"praat-parselmouth": parselmouth.__version__}
        return items, {"versions": versions, "classes": list(PROSODY_LABELS)}

    return cached_stimulus_set("prosody_utterances", params, build)


def prosody_pairs(utterances: Sequence[Utterance]) -> list[Pair]:
    """Minimal pairs (class ``c`` = clean/source, neutral = corrupt/base) of the same
    sentence, for every non-neutral class: 3 pairs per sentence. Each pair's meta holds
    the class, its label and the sentence (the bootstrap's cluster)."""
    by_sentence: dict[int, dict[str, Utterance]] = {}
    for u in utterances:
        by_sentence.setdefault(int(u.meta["sentence"]), {})[u.meta["class"]] = u
    pairs = []
    for sentence, classes in sorted(by_sentence.items()):
        if "neutral" not in classes:
            raise ValueError(f"sentence {sentence} has no neutral utterance")
        neutral = classes["neutral"]
        for name in PROSODY_LABELS[1:]:
            if name not in classes:
                continue
            source = classes[name]
            if source.audio.size != neutral.audio.size:
                raise ValueError(f"{source.id} and {neutral.id} differ in length")
            pairs.append(
                Pair(
                    id=f"prosody-pair/{sentence:04d}/{name}",
                    attribute="prosody",
                    level=name,
                    clean=source,
                    corrupt=neutral,
                    meta={
                        "class": name,
                        "label": PROSODY_LABELS.index(name),
                        "sentence": sentence,
                        "envelope_correlation": round(
                            envelope_correlation(source.audio, neutral.audio), 6
                        ),
                    },
                )
            )
    return pairs
