"""ALME-schema audio-text conflict stimuli from templates, and flip alignment.

Each stimulus changes one fact between ``ref_text`` (what the audio says) and
``conflict_text`` (what the text channel says) with one of ALME's five flip types.
Negations are written so that the flip can keep the token count
("There is a dog" / "There is no dog", "can" / "cannot"): text-stream patching
needs the prompt positions of both texts to line up.

``align_flip`` marks, under a tokenizer, the shared token prefix before the flip,
the flipped spans and whether both texts have the same token count; only aligned
stimuli enter the sweeps, and ``conflict_stimuli`` reports the drops per flip type.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from listenkit.stimuli.noise import fit_to_unit_range, make_noise, mix_at_snr, speech_span
from listenkit.stimuli.store import StimulusSet, cached_stimulus_set
from listenkit.stimuli.tts import get_voice
from listenkit.stimuli.types import FLIP_TYPES, ConflictStimulus, Question, Utterance

__all__ = [
    "FlipAlignment",
    "align_flip",
    "conflict_stimuli",
    "conflict_templates",
    "noisy_conflicts",
]

_NAMES = ("Anna", "Tom", "Maria", "David", "Sarah", "James", "Laura", "Peter", "Emma", "Jack")
_NOUNS = ("car", "door", "bicycle", "jacket", "umbrella", "boat", "cup", "bag", "chair", "kite")
_COLOURS = (
    ("red", "blue"), ("green", "yellow"), ("black", "white"), ("brown", "grey"),
    ("pink", "purple"), ("blue", "green"), ("white", "red"), ("yellow", "black"),
    ("grey", "pink"), ("purple", "brown"), ("orange", "blue"), ("red", "green"),
)  # fmt: skip
_PLACES = (
    ("garden", "dog"), ("kitchen", "cat"), ("car", "bag"), ("room", "chair"),
    ("box", "key"), ("fridge", "cake"), ("drawer", "pen"), ("office", "lamp"),
    ("park", "bench"), ("cupboard", "cup"), ("yard", "ball"), ("hall", "coat"),
)  # fmt: skip
_SHOPS = ("bakery", "library", "pharmacy", "museum")
_DAYS = ("Monday", "Tuesday", "Friday", "Saturday", "Sunday")
_ABILITIES = (
    "swim", "drive", "cook", "sing", "dance", "read", "ski", "paint", "type", "skate", "knit",
)  # fmt: skip
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve")
_ITEMS = ("apples", "books", "tickets", "eggs", "shirts", "cups", "candles", "stamps")
_EVENTS = ("meeting", "concert", "lesson", "match", "film", "party", "lecture", "class")
_TIMES = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True, kw_only=True)
class _Template:
    flip_type: str
    ref_text: str
    conflict_text: str
    question_text: str
    choices: tuple[str, str]
    correct_answer: str

    def stimulus(
        self, sid: str, ref_audio: np.ndarray, conflict_audio: np.ndarray, meta: dict | None = None
    ) -> ConflictStimulus:
        """This template as a stimulus with the given audio for its two texts."""
        return ConflictStimulus(
            stimulus_id=sid,
            language="en",
            ref_text=self.ref_text,
            conflict_text=self.conflict_text,
            question=Question(
                question_text=self.question_text,
                choices=self.choices,
                correct_answer=self.correct_answer,
                flip_type=self.flip_type,
            ),
            ref_audio=Utterance(id=f"{sid}/ref", text=self.ref_text, audio=ref_audio),
            conflict_audio=Utterance(
                id=f"{sid}/conflict", text=self.conflict_text, audio=conflict_audio
            ),
            meta=meta or {},
        )


def _adjective_swaps() -> list[_Template]:
    out = []
    for noun, (a, b) in itertools.product(_NOUNS, _COLOURS):
        out.append(
            _Template(
                flip_type="adjective_swap",
                ref_text=f"The {a} {noun} is next to the house.",
                conflict_text=f"The {b} {noun} is next to the house.",
                question_text=f"What colour is the {noun}?",
                choices=(a, b),
                correct_answer=a,
            )
        )
    return out


def _negations(add: bool) -> list[_Template]:
    """(positive, negative, yes/no question) triples; ``add`` flips positive -> negative."""
    triples = [
        (f"There is a {thing} in the {place}.", f"There is no {thing} in the {place}.",
         f"Is there a {thing} in the {place}?")
        for place, thing in _PLACES
    ]  # fmt: skip
    # natural "is / is not" negations: token counts differ, so the alignment filter
    # drops them from text-stream sweeps; audio-only analyses keep them
    triples += [
        (f"The {shop} is open on {day}.", f"The {shop} is not open on {day}.",
         f"Is the {shop} open on {day}?")
        for shop, day in itertools.product(_SHOPS, _DAYS)
    ]  # fmt: skip
    triples += [
        (f"{name} can {ability} very well.", f"{name} cannot {ability} very well.",
         f"Can {name} {ability} very well?")
        for name, ability in itertools.product(_NAMES, _ABILITIES)
    ]  # fmt: skip
    return [
        _Template(
            flip_type="negation_add" if add else "negation_remove",
            ref_text=pos if add else neg,
            conflict_text=neg if add else pos,
            question_text=question,
            choices=("yes", "no"),
            correct_answer="yes" if add else "no",
        )
        for pos, neg, question in triples
    ]


def _number_swaps() -> list[_Template]:
    out = []
    for name, item, (i, a) in itertools.product(_NAMES[:5], _ITEMS, enumerate(_NUMBERS)):
        b = _NUMBERS[(i + 3) % len(_NUMBERS)]
        out.append(
            _Template(
                flip_type="number_swap",
                ref_text=f"{name} bought {a} {item} at the market.",
                conflict_text=f"{name} bought {b} {item} at the market.",
                question_text=f"How many {item} did {name} buy?",
                choices=(a, b),
                correct_answer=a,
            )
        )
    return out


def _time_swaps() -> list[_Template]:
    out = []
    for event, (i, a) in itertools.product(_EVENTS, enumerate(_TIMES)):
        for shift in (2, 5):
            b = _TIMES[(i + shift) % len(_TIMES)]
            out.append(
                _Template(
                    flip_type="time_swap",
                    ref_text=f"The {event} starts at {a} o'clock today.",
                    conflict_text=f"The {event} starts at {b} o'clock today.",
                    question_text=f"When does the {event} start?",
                    choices=(f"{a} o'clock", f"{b} o'clock"),
                    correct_answer=f"{a} o'clock",
                )
            )
    return out


@functools.cache
def conflict_templates() -> dict[str, tuple[_Template, ...]]:
    """All templated conflicts per flip type, in a fixed order."""
    return {
        "adjective_swap": tuple(_adjective_swaps()),
        "negation_add": tuple(_negations(add=True)),
        "negation_remove": tuple(_negations(add=False)),
        "number_swap": tuple(_number_swaps()),
        "time_swap": tuple(_time_swaps()),
    }


@dataclass(frozen=True, kw_only=True)
class FlipAlignment:
    """Where the flip sits in transcript tokens (Whisper convention: leading space).

    ``prefix`` is the shared token prefix before the flip; ``ref_span`` and
    ``conflict_span`` are the differing tokens (common suffix removed).
    """

    ref_tokens: tuple[int, ...]
    conflict_tokens: tuple[int, ...]
    prefix: tuple[int, ...]
    ref_span: tuple[int, ...]
    conflict_span: tuple[int, ...]
    prefix_identical: bool
    same_length: bool

    @property
    def aligned(self) -> bool:
        return self.prefix_identical and self.same_length and bool(self.ref_span)

    @property
    def reason(self) -> str:
        if not self.prefix_identical:
            return "prefix tokenizes differently"
        if not self.same_length:
            return "token counts differ"
        if not self.ref_span or not self.conflict_span:
            return "empty flipped span"
        return "aligned"


def align_flip(
    ref_text: str, conflict_text: str, encode: Callable[[str], list[int]]
) -> FlipAlignment:
    """Align the flip of two texts under ``encode`` (e.g. ``SpeechModel.text_tokens``)."""
    ref_words, conflict_words = ref_text.split(), conflict_text.split()
    first = next(
        (i for i, (a, b) in enumerate(zip(ref_words, conflict_words, strict=False)) if a != b),
        min(len(ref_words), len(conflict_words)),
    )
    ref_tokens = tuple(encode(ref_text))
    conflict_tokens = tuple(encode(conflict_text))
    prefix = tuple(encode(" ".join(ref_words[:first]))) if first > 0 else ()
    prefix_identical = (
        ref_tokens[: len(prefix)] == prefix and conflict_tokens[: len(prefix)] == prefix
    )
    tail = 0
    while (
        tail < min(len(ref_tokens), len(conflict_tokens)) - len(prefix)
        and ref_tokens[-1 - tail] == conflict_tokens[-1 - tail]
    ):
        tail += 1
    return FlipAlignment(
        ref_tokens=ref_tokens,
        conflict_tokens=conflict_tokens,
        prefix=prefix,
        ref_span=ref_tokens[len(prefix) : len(ref_tokens) - tail],
        conflict_span=conflict_tokens[len(prefix) : len(conflict_tokens) - tail],
        prefix_identical=prefix_identical,
        same_length=len(ref_tokens) == len(conflict_tokens),
    )


def _select(templates: Sequence[_Template], n: int | None, seed: int) -> list[_Template]:
    order = np.random.default_rng(seed).permutation(len(templates))
    chosen = [templates[i] for i in order]
    return chosen if n is None else chosen[:n]


def conflict_stimuli(
    *,
    per_flip_type: int | None = None,
    encode: Callable[[str], list[int]] | None = None,
    tokenizer_name: str = "",
    voice: str = "piper:joe",
    seed: int = 0,
) -> StimulusSet:
    """English ALME-schema conflicts with TTS audio for ref_text AND conflict_text.

    With ``encode`` given, only stimuli aligned under it are kept (``per_flip_type``
    counts kept ones) and the manifest header records ``dropped[flip_type][reason]``.
    ``tokenizer_name`` names ``encode`` in the cache key (e.g. the model name).
    """
    if encode is not None and not tokenizer_name:
        raise ValueError("name the tokenizer (tokenizer_name=) so the cache can tell them apart")
    params = {
        "per_flip_type": per_flip_type,
        "tokenizer": tokenizer_name or None,
        "voice": voice,
        "seed": int(seed),
        "templates_version": 1,
    }

    def build():
        tts = get_voice(voice)
        items: list[ConflictStimulus] = []
        dropped: dict[str, dict[str, int]] = {}
        for flip_type in FLIP_TYPES:
            kept = 0
            drops: Counter[str] = Counter()
            for t in _select(conflict_templates()[flip_type], None, seed):
                if per_flip_type is not None and kept >= per_flip_type:
                    break
                meta: dict = {"generator": "conflict_templates_v1", "voice": voice}
                if encode is not None:
                    alignment = align_flip(t.ref_text, t.conflict_text, encode)
                    if not alignment.aligned:
                        drops[alignment.reason] += 1
                        continue
                    meta["flip_span"] = {
                        "tokenizer": tokenizer_name,
                        "prefix_len": len(alignment.prefix),
                        "ref_span": list(alignment.ref_span),
                        "conflict_span": list(alignment.conflict_span),
                    }
                sid = f"en-{flip_type}-{kept:04d}"
                items.append(
                    t.stimulus(
                        sid, tts.synthesize(t.ref_text), tts.synthesize(t.conflict_text), meta
                    )
                )
                kept += 1
            dropped[flip_type] = dict(sorted(drops.items()))
        header = {"dropped": dropped, "versions": {tts.name: tts.version()}}
        return items, header

    return cached_stimulus_set("conflict_stimuli", params, build)


def noisy_conflicts(
    stimuli: Sequence[ConflictStimulus], snr_db: float, *, noise: str = "white", seed: int = 0
) -> list[ConflictStimulus]:
    """The same stimuli with ``noise`` at ``snr_db`` (over the speech span) added to both
    audios; the noise of stimulus ``i``'s ref/conflict audio is seeded by ``[seed, i, 0/1]``."""
    out = []
    for i, s in enumerate(stimuli):
        noisy = {}
        for role, utt in (("ref_audio", s.ref_audio), ("conflict_audio", s.conflict_audio)):
            if utt is None:
                raise ValueError(f"stimulus {s.stimulus_id!r} has no {role}")
            rng = np.random.default_rng([int(seed), i, 0 if role == "ref_audio" else 1])
            span = speech_span(utt.audio)
            mixture, measured = mix_at_snr(
                utt.audio, make_noise(noise, utt.audio.size, rng), snr_db, span=span
            )
            mixed, level = fit_to_unit_range(mixture)
            meta = dict(utt.meta) | {"noise": noise, "snr_db": float(snr_db)}
            meta["measured_snr_db"] = round(measured, 6)
            meta["mixture_level"] = round(level, 6)
            noisy[role] = Utterance(id=utt.id, text=utt.text, audio=mixed, meta=meta)
        meta = dict(s.meta) | {"noise": {"kind": noise, "snr_db": float(snr_db), "seed": seed}}
        out.append(replace(s, meta=meta, **noisy))
    return out
