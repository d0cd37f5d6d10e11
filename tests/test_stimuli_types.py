"""Stimulus data types: validation, bring-your-own audio, JSON round trips."""

from __future__ import annotations

import json

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from listenkit import AudioError
from listenkit.stimuli import ConflictStimulus, Pair, Question, Utterance

texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
audio = st.integers(1, 400).flatmap(
    lambda n: st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=n, max_size=n).map(
        lambda xs: np.array(xs, dtype=np.float32)
    )
)
meta = st.dictionaries(
    st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=3
)


def _json(obj):
    return json.loads(json.dumps(obj.to_dict()))


@settings(max_examples=60, deadline=None)
@given(text=texts, a=audio, b=audio, m=meta)
def test_pair_json_round_trip(text, a, b, m):
    pair = Pair(
        id="p",
        attribute="noise",
        level="white@0dB",
        clean=Utterance(id="p/c", text=text, audio=a, meta=m),
        corrupt=Utterance(id="p/x", text=text, audio=b),
        meta=m,
    )
    again = Pair.from_dict(_json(pair))
    assert again == pair
    assert again.clean.audio.tobytes() == a.tobytes()


@settings(max_examples=30, deadline=None)
@given(a=audio, b=audio)
def test_conflict_json_round_trip(a, b):
    stim = ConflictStimulus(
        stimulus_id="s1",
        language="en",
        ref_text="The red car.",
        conflict_text="The blue car.",
        question=Question(
            question_text="What colour is the car?",
            choices=("red", "blue"),
            correct_answer="red",
            flip_type="adjective_swap",
        ),
        ref_audio=Utterance(id="s1/ref", text="The red car.", audio=a),
        conflict_audio=Utterance(id="s1/conflict", text="The blue car.", audio=b),
    )
    assert ConflictStimulus.from_dict(_json(stim)) == stim


def test_audio_is_read_only_copy():
    source = np.zeros(10, dtype=np.float32)
    utt = Utterance(id="u", text="hi", audio=source)
    source[0] = 1.0
    assert utt.audio[0] == 0.0
    with pytest.raises(ValueError):
        utt.audio[0] = 2.0


def test_pair_texts_must_match():
    a = Utterance(id="a", text="one", audio=np.zeros(5, np.float32))
    b = Utterance(id="b", text="two", audio=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="texts differ"):
        Pair(id="p", clean=a, corrupt=b, attribute="noise")


def test_from_arrays_resamples_and_downmixes_and_records_it():
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((22_050, 2))).astype(np.float32)
    pair = Pair.from_arrays(stereo, stereo[:, 0], "hello there", sample_rate=22_050, id="mine")
    assert pair.clean.audio.shape == (16_000,)
    assert pair.clean.meta == {"downmixed_from_channels": 2, "resampled_from_hz": 22_050}
    assert pair.corrupt.meta == {"resampled_from_hz": 22_050}


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.inf], np.float32), "NaN or infinite"),
        (np.array([0.0, np.nan], np.float32), "NaN or infinite"),
        (np.zeros((3, 3, 3), np.float32), "1-D"),
    ],
    ids=["empty", "inf", "nan", "3-d"],
)
def test_bad_audio_is_rejected(bad, match):
    with pytest.raises(AudioError, match=match):
        Utterance(id="u", text="x", audio=bad)


def test_tampered_audio_is_detected_on_load():
    utt = Utterance(id="u", text="x", audio=np.ones(4, np.float32) * 0.5)
    record = utt.to_dict(inline_audio=False)
    with pytest.raises(ValueError, match="does not match"):
        Utterance.from_dict(record, np.ones(4, np.float32) * 0.25)


def test_question_validates_its_fields():
    with pytest.raises(ValueError, match="not in"):
        Question(question_text="?", choices=("a", "b"), correct_answer="c", flip_type="time_swap")
    with pytest.raises(ValueError, match="unknown flip_type"):
        Question(question_text="?", choices=("a", "b"), correct_answer="a", flip_type="swap")
