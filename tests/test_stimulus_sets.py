"""Cached stimulus sets: determinism, manifests, concurrency, TTS backends, real clips."""

from __future__ import annotations

import hashlib
import os
import textwrap

import numpy as np
import pytest

from listenkit.stimuli import (
    EspeakVoice,
    FliteVoice,
    PiperVoice,
    TTSUnavailableError,
    get_voice,
    noise_pairs,
    pocketsphinx_clips,
    speed_pairs,
    textbank,
    voice_pairs,
)
from listenkit.stimuli.store import load_manifest

from .racing import race

TEXTS = ("The red car is parked next to the old bakery.", "Nine silver spoons were missing.")


def _tree_digest(directory) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_sets(tmp_path, monkeypatch):
    digests = []
    for run in ("a", "b"):
        monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path / run))
        built = noise_pairs(TEXTS, 0.0, "white", seed=5)
        digests.append(_tree_digest(built.directory))
    assert digests[0] == digests[1]
    assert len(digests[0]) == 1 + 2 * len(TEXTS)  # manifest + clean and corrupt audio


def test_different_seed_changes_only_the_noise(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    a = noise_pairs(TEXTS, 0.0, "white", seed=1)
    b = noise_pairs(TEXTS, 0.0, "white", seed=2)
    for pa, pb in zip(a, b, strict=True):
        assert np.array_equal(pa.clean.audio, pb.clean.audio)
        assert not np.array_equal(pa.corrupt.audio, pb.corrupt.audio)


def test_a_pair_does_not_depend_on_the_rest_of_the_set(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    both = noise_pairs(TEXTS, 5.0, "pink", seed=3)
    first = noise_pairs(TEXTS[:1], 5.0, "pink", seed=3)
    assert np.array_equal(both[0].corrupt.audio, first[0].corrupt.audio)


def test_manifest_records_generator_versions_and_hashes(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    built = noise_pairs(TEXTS, -5.0, "babble", seed=0)
    again = load_manifest(built.directory)
    assert [p.to_dict() for p in again] == [p.to_dict() for p in built]
    assert again.header["versions"]["piper:joe"].startswith("piper-tts 1.8.0")
    for pair in built:
        assert pair.meta["measured_snr_db"] == pytest.approx(-5.0, abs=0.05)
        assert pair.clean.text == pair.corrupt.text
    lines = (built.directory / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 1 + len(TEXTS)
    assert '"sha256"' in lines[1]


def test_voice_and_speed_pairs(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    voices = voice_pairs(TEXTS[:1], "piper:joe", "espeak-ng:en-gb-scotland")
    assert voices[0].corrupt.meta["voice"] == "espeak-ng:en-gb-scotland"
    speed = speed_pairs(TEXTS[:1], 1.5)
    ratio = speed[0].clean.audio.size / speed[0].corrupt.audio.size
    assert 1.25 < ratio < 1.6
    with pytest.raises(ValueError, match="not 1"):
        speed_pairs(TEXTS, 1.0)
    with pytest.raises(ValueError, match="both"):
        voice_pairs(TEXTS, "piper:joe", "piper:joe")
    with pytest.raises(ValueError, match="empty text"):
        noise_pairs(["fine", " "], 0.0)


RACE_SETUP = textwrap.dedent(
    """
    import time
    import listenkit.stimuli.pairs as pairs
    real = pairs.mix_at_snr
    def counting_mix(*args, **kwargs):
        print("BUILDING", flush=True)
        time.sleep(0.5)
        return real(*args, **kwargs)
    pairs.mix_at_snr = counting_mix
    """
)
RACE_BODY = textwrap.dedent(
    """
    built = pairs.noise_pairs(["Two workers, one set."], 0.0, "white", seed=9)
    print("LOADED", len(built), flush=True)
    """
)


def test_two_processes_build_a_set_once(tmp_path):
    outputs = race(RACE_SETUP, RACE_BODY, cache=tmp_path / "cache", workdir=tmp_path)
    assert sum(o.count("BUILDING") for o in outputs) == 1, outputs
    assert all("LOADED 1" in o for o in outputs)


def test_piper_is_byte_identical_run_to_run():
    a = PiperVoice().synthesize("Deterministic speech, please.")
    b = PiperVoice().synthesize("Deterministic speech, please.")
    assert a.tobytes() == b.tobytes()
    assert 20 * np.log10(np.sqrt(np.mean(a.astype(np.float64) ** 2))) == pytest.approx(-20, abs=0.1)


@pytest.mark.parametrize(
    "spec", ["espeak-ng:en-us-nyc", "espeak-ng:en-029", "flite:kal16", "flite:awb"]
)
def test_other_voices_speak(spec):
    audio = get_voice(spec).synthesize("Testing one two three.")
    assert audio.dtype == np.float32 and 0.5 < audio.size / 16_000 < 5


def test_missing_backend_names_the_install_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TTSUnavailableError, match="apt-get install espeak-ng"):
        EspeakVoice("en-gb")
    with pytest.raises(TTSUnavailableError, match="apt-get install flite"):
        FliteVoice("slt")


def test_unknown_voices_are_errors():
    with pytest.raises(TTSUnavailableError, match="no voice"):
        EspeakVoice("en-klingon")
    with pytest.raises(ValueError, match="unknown voice"):
        get_voice("festival:kal")


def test_textbank_v1():
    bank = textbank()
    assert len(bank) >= 200
    assert len(set(bank)) == len(bank)
    assert all(4 <= len(s.split()) <= 15 for s in bank)


def test_pocketsphinx_real_clips():
    clips = pocketsphinx_clips()
    assert len(clips) == 12
    assert {c.id.split("/")[1] for c in clips} == {"librivox", "cards", "goforward", "tidigits"}
    assert sum(c.duration_s for c in clips) == pytest.approx(40, abs=5)
    assert "Carnegie Mellon" in clips[0].meta["source"]
    assert os.path.isfile(clips[0].meta["license_file"])


def _one_set():
    return noise_pairs(["A cached set, checked on load."], 0.0, "white", seed=5)


def test_a_corrupted_cached_audio_file_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    from listenkit import CacheWarning

    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    first = _one_set()
    audio_file = next((first.directory / "audio").glob("*.npy"))
    clean = first[0].corrupt.audio
    np.save(audio_file, np.zeros(4, dtype="<f4"), allow_pickle=False)  # altered on disk
    with pytest.warns(CacheWarning, match="sha256|does not match"):
        again = _one_set()
    np.testing.assert_array_equal(again[0].corrupt.audio, clean)
    assert _one_set().manifest_sha256 == first.manifest_sha256  # rebuilt once, now clean


@pytest.mark.parametrize(
    ("damage", "match"),
    [(lambda text: "", "empty"), (lambda text: text.splitlines()[0] + "\n", "truncated")],
    ids=["empty", "truncated"],
)
def test_empty_or_truncated_manifests_are_clear_errors_and_rebuilt(tmp_path, monkeypatch,
                                                                    damage, match):  # fmt: skip
    from listenkit import CacheWarning
    from listenkit.stimuli.store import StimulusCacheError

    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    first = _one_set()
    manifest = first.directory / "manifest.jsonl"
    manifest.write_text(damage(manifest.read_text()))
    with pytest.raises(StimulusCacheError, match=match):
        load_manifest(first.directory)
    with pytest.warns(CacheWarning, match=match):
        again = _one_set()
    assert len(again) == 1 and again.manifest_sha256 == first.manifest_sha256


def test_noisy_mixtures_stay_in_range_with_the_exact_snr(tmp_path, monkeypatch):

    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    pairs = noise_pairs(list(textbank()[:6]), -5.0, "white", seed=1)  # loud noise
    for p in pairs:
        assert np.abs(p.corrupt.audio).max() <= 1.0
        assert p.meta["measured_snr_db"] == pytest.approx(-5.0, abs=0.01)


def test_praat_voice_pairs_are_time_aligned(tmp_path, monkeypatch):
    from listenkit.stimuli.pairs import praat_voice_pairs

    monkeypatch.setenv("LISTENKIT_CACHE", str(tmp_path))
    pairs = praat_voice_pairs(list(TEXTS))
    for p in pairs:
        assert p.clean.audio.size == p.corrupt.audio.size
        assert p.meta["alignment"]["envelope_correlation"] > 0.9
        assert not np.array_equal(p.clean.audio, p.corrupt.audio)
        assert np.abs(p.corrupt.audio).max() <= 1.0
    assert pairs.header["versions"]["praat-parselmouth"]


def test_praat_changes_are_reproducible():
    """Praat's resynthesis draws random numbers; seeded per call, the same input gives the
    same output, in any order and after other Praat calls (two builds of a stimulus set
    differed before)."""
    from listenkit.stimuli.prosody import change_voice, prosody_class

    audio = PiperVoice().synthesize("The red car is parked next to the old bakery.")
    first = change_voice(audio, formant_shift_ratio=1.2, new_pitch_median=200.0)
    prosody_class(audio, "high-wide")  # other Praat work in between
    again = change_voice(audio, formant_shift_ratio=1.2, new_pitch_median=200.0)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(prosody_class(audio, "high-flat"),
                                  prosody_class(audio, "high-flat"))  # fmt: skip
    other_seed = change_voice(audio, formant_shift_ratio=1.2, new_pitch_median=200.0, seed=1)
    assert not np.array_equal(first, other_seed)


def test_prosody_classes_keep_timing_and_level_and_change_pitch():
    import parselmouth

    from listenkit.stimuli.prosody import PROSODY_CLASSES, prosody_class

    audio = PiperVoice().synthesize("The red car is parked next to the old bakery.")

    def pitch(x):
        values = parselmouth.Sound(x.astype(np.float64), 16_000).to_pitch().selected_array
        f0 = values["frequency"]
        return f0[f0 > 0]

    rms = 0.05  # every class at the same level
    medians, ranges = {}, {}
    for name in PROSODY_CLASSES:
        out = prosody_class(audio, name)
        assert out.size == audio.size
        assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(rms, rel=1e-3)
        f0 = pitch(out)
        medians[name], ranges[name] = np.median(f0), np.percentile(f0, 90) - np.percentile(f0, 10)
    assert (
        medians["high-wide"] > medians["neutral"] + 30
        and medians["high-flat"] > medians["neutral"] + 30
    )
    assert medians["low-narrow"] < medians["neutral"]
    assert ranges["high-flat"] < ranges["high-wide"] and ranges["low-narrow"] < ranges["high-wide"]
    with pytest.raises(ValueError, match="unknown prosody class"):
        prosody_class(audio, "angry")


@pytest.mark.slow
def test_shared_level_noise_pairs_differ_only_by_the_noise():
    """v3's noise pairs (shared_level): a clipping mixture is scaled with its clean side,
    so corrupt - clean is the scaled noise alone, at the asked SNR over the speech span;
    v2's scaled only the corrupt side (a pair also differed by a gain)."""
    from listenkit.stimuli.noise import speech_span

    texts = textbank()[:3]

    def snr_of_difference(pair):
        span = speech_span(pair.clean.audio)
        clean = pair.clean.audio[span].astype(np.float64)
        noise = (pair.corrupt.audio - pair.clean.audio)[span].astype(np.float64)
        return 10 * np.log10(np.sum(clean**2) / np.sum(noise**2))

    shared = noise_pairs(texts, 0.0, "white", seed=3, shared_level=True)
    v2 = noise_pairs(texts, 0.0, "white", seed=3)
    levels = [p.meta["mixture_level"] for p in shared]
    assert min(levels) < 1.0  # at 0 dB some mixtures would clip
    for a, b in zip(shared, v2, strict=True):
        assert abs(snr_of_difference(a)) < 0.01
        np.testing.assert_array_equal(a.corrupt.audio, b.corrupt.audio)
    assert max(abs(snr_of_difference(p)) for p in v2) > 0.1
    assert shared.manifest_sha256 != v2.manifest_sha256
