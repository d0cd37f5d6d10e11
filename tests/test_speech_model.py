"""SpeechModel: log-mel conventions, batching, decoding, scoring, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import whisper

from listenkit import AudioError


def test_dimensions(embedded_model):
    expected = {"whisper-tiny.en": (4, 4, 6, 384), "whisper-base": (6, 6, 8, 512)}
    got = (
        embedded_model.encoder_layers,
        embedded_model.decoder_layers,
        embedded_model.heads,
        embedded_model.d_model,
    )
    assert got == expected[embedded_model.name]


def test_log_mel_pads_the_waveform_not_the_mel(tiny_model, speech_clips):
    _, audio = speech_clips[0]
    mel = tiny_model.log_mel(audio)
    assert mel.shape == (80, 3000)
    padded = np.zeros(480_000, dtype=np.float32)
    padded[: audio.size] = audio
    expected = whisper.log_mel_spectrogram(torch.from_numpy(padded))
    assert torch.equal(mel, expected)


def test_long_audio_is_an_error_unless_trim_is_asked_for(tiny_model):
    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(40 * 16_000)).astype(np.float32)
    for call in (tiny_model.log_mel, tiny_model.transcribe):
        with pytest.raises(AudioError, match=r"40\.0 s.*trim=True"):
            call(long)
    with pytest.raises(AudioError, match="trim=True"):
        tiny_model.score(long, "text")
    assert torch.equal(tiny_model.log_mel(long, trim=True), tiny_model.log_mel(long[:480_000]))


def test_other_sample_rates_are_resampled_when_stated(tiny_model, speech_clips):
    from scipy.signal import resample_poly

    text, audio = speech_clips[2]
    at_44k = np.clip(resample_poly(audio, 441, 160), -1, 1).astype(np.float32)
    assert tiny_model.transcribe(at_44k, sample_rate=44_100) == tiny_model.transcribe(audio)
    score_44k = tiny_model.score(at_44k, text, sample_rate=44_100)
    assert score_44k == pytest.approx(tiny_model.score(audio, text), abs=0.5)
    tokens = tiny_model.greedy_tokens([at_44k], sample_rate=44_100)
    assert tokens == tiny_model.greedy_tokens([audio])
    assert tiny_model.log_mel(at_44k, sample_rate=44_100).shape == (80, 3000)


def test_batching_never_couples_items(tiny_model, speech_clips):
    waves = [audio for _, audio in speech_clips]
    quiet = 0.01 * waves[1]
    batch = tiny_model.log_mel([waves[0], quiet])
    assert torch.equal(batch[1], tiny_model.log_mel(quiet))
    assert tiny_model.transcribe([waves[0], waves[2]]) == [
        tiny_model.transcribe(waves[0]),
        tiny_model.transcribe(waves[2]),
    ]
    texts = ["The quick brown fox.", "A train leaves at seven."]
    batched = tiny_model.score([waves[0], waves[2]], texts)
    single = [tiny_model.score(waves[0], texts[0]), tiny_model.score(waves[2], texts[1])]
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_score_is_the_sum_of_token_logprobs_including_end_of_text(base_model, speech_clips):
    text, audio = speech_clips[0]
    values = base_model.token_logprobs(audio, text)
    assert values.shape == (len(base_model.text_tokens(text)) + 1,)
    assert np.all(values <= 0)
    assert base_model.score(audio, text) == pytest.approx(float(values.sum()), abs=1e-9)
    assert base_model.score(audio, text) > base_model.score(
        audio, "Completely different words here."
    )


def test_transcribes_real_speech(base_model, speech_clips):
    text, audio = speech_clips[0]
    assert base_model.transcribe(audio) == text


@pytest.mark.parametrize(
    ("audio", "kwargs", "match"),
    [
        (np.zeros((2, 16_000), dtype=np.float32), {}, "1-D waveform"),
        (np.zeros(16_000, dtype=np.int16), {}, "float samples"),
        (np.zeros(0, dtype=np.float32), {}, "empty"),
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), {}, "NaN or infinite"),
        (np.full(16_000, 32767.0, dtype=np.float32), {}, "divide by 32768"),
        (np.full(16_000, 1.5, dtype=np.float32), {}, r"\[-1, 1\].*peak is 1.5"),
        (np.zeros(16_000, dtype=np.float32), {"sample_rate": 0}, "positive"),
        ([], {}, "empty batch"),
        ("not audio", {}, "numpy array"),
    ],
    ids=[
        "stereo",
        "int16",
        "empty",
        "nan",
        "int16-as-float",
        "out-of-range",
        "rate-0",
        "empty-batch",
        "string",
    ],
)
def test_bad_audio_is_a_clear_error(tiny_model, audio, kwargs, match):
    with pytest.raises(AudioError, match=match):
        tiny_model.log_mel(audio, **kwargs)


def test_mismatched_batch_of_texts_is_an_error(tiny_model, speech_clips):
    _, audio = speech_clips[0]
    with pytest.raises(ValueError, match="2 waveforms but 1 texts"):
        tiny_model.score([audio, audio], ["one text"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_a_sweep_runs_on_the_gpu_with_the_same_numbers():
    """--device cuda: the engine creates every tensor on the model's device."""
    import listenkit
    from listenkit.stimuli import noise_pairs, textbank

    pairs = list(noise_pairs(textbank()[:2], 0.0, "white", seed=20260226))
    cpu = listenkit.sweep(listenkit.load_model("whisper-tiny.en"), pairs, "encoder.attn_out",
                          progress=False)  # fmt: skip
    gpu_model = listenkit.load_model("whisper-tiny.en", device="cuda")
    assert gpu_model.device.type == "cuda"
    gpu = listenkit.sweep(gpu_model, pairs, "encoder.attn_out", progress=False)
    np.testing.assert_allclose(gpu.patched, cpu.patched, atol=1e-2)


def test_the_claims_device_option_reaches_whisper(monkeypatch):
    """``--device`` sets the default device of every model the claims fixtures load."""
    from fixtures import models

    calls = []
    monkeypatch.setattr(models, "_LOADED", {})
    monkeypatch.setattr(models, "_DEVICE", {"default": "cpu"})
    monkeypatch.setattr(
        models.listenkit, "load_model", lambda name, device: calls.append((name, device))
    )

    class Config:
        @staticmethod
        def getoption(name):
            return {"device": "cuda:1"}[name]

    models.pytest_configure(Config())
    models.get_model("whisper-large-v2")
    assert calls == [("whisper-large-v2", "cuda:1")]
