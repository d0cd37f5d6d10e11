"""ALME-schema conflict stimuli and the flip-alignment filter."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from listenkit.stimuli import align_flip, conflict_stimuli
from listenkit.stimuli.conflict import conflict_templates
from listenkit.stimuli.types import FLIP_TYPES

words = st.text("abcdefghij", min_size=1, max_size=6)


def _toy_encode(text: str) -> list[int]:
    """A tokenizer whose words become ceil(len / 3) tokens (so lengths can differ)."""
    out = []
    for w in text.split():
        out += [hash((w, i)) % 1000 for i in range((len(w) + 2) // 3)]
    return out


@given(prefix=st.lists(words, max_size=4), suffix=st.lists(words, max_size=4), a=words, b=words)
def test_filter_accepts_exactly_the_aligned_flips(prefix, suffix, a, b):
    if a == b:
        return
    ref, conflict = " ".join([*prefix, a, *suffix]), " ".join([*prefix, b, *suffix])
    al = align_flip(ref, conflict, _toy_encode)
    assert al.prefix_identical
    assert al.aligned == (len(_toy_encode(a)) == len(_toy_encode(b)))
    assert list(al.prefix) == _toy_encode(" ".join(prefix))


def test_whisper_tokenizer_examples(tiny_model, base_model):
    for model in (tiny_model, base_model):
        good = align_flip("There is a dog here.", "There is no dog here.", model.text_tokens)
        assert good.aligned and len(good.ref_span) == len(good.conflict_span) == 1
        bad = align_flip("The shop is open.", "The shop is not open.", model.text_tokens)
        assert not bad.aligned and bad.reason == "token counts differ"


def test_enough_templates_per_flip_type_for_the_full_profile(tiny_model, base_model):
    for model in (tiny_model, base_model):
        for flip_type, templates in conflict_templates().items():
            aligned = [
                t
                for t in templates
                if align_flip(t.ref_text, t.conflict_text, model.text_tokens).aligned
            ]
            assert len(aligned) >= 100, (model.name, flip_type)
            assert len(aligned) < len(templates) or flip_type not in (
                "negation_add",
                "negation_remove",
            )


def test_built_stimuli_follow_alme_schema(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    built = conflict_stimuli(
        per_flip_type=2, encode=tiny_model.text_tokens, tokenizer_name=tiny_model.name
    )
    assert len(built) == 2 * len(FLIP_TYPES)
    assert set(built.header["dropped"]) == set(FLIP_TYPES)
    for stim in built:
        record = stim.to_dict(inline_audio=False)
        assert {
            "stimulus_id",
            "language",
            "audio_path",
            "ref_text",
            "conflict_text",
            "question",
        } <= set(record)
        assert set(record["question"]) == {
            "question_text",
            "choices",
            "correct_answer",
            "flip_type",
        }
        assert stim.ref_audio.text == stim.ref_text
        assert stim.conflict_audio.text == stim.conflict_text
        expected = {"negation_add": "yes", "negation_remove": "no"}.get(
            stim.flip_type, stim.question.choices[0]
        )
        assert stim.question.correct_answer == expected  # what the audio (ref_text) says
        assert stim.meta["flip_span"]["tokenizer"] == "whisper-tiny.en"


def test_encode_needs_a_name():
    with pytest.raises(ValueError, match="name the tokenizer"):
        conflict_stimuli(per_flip_type=1, encode=str.split)
