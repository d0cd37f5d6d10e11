"""E3 machinery: LoRA adapters, the readout sweep, training, the adapter cache and the
shift statistic on planted models with a known answer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import whisper

from listenkit import sweep
from listenkit.analyses.adaptation.adapter_store import Trained, cached_training
from listenkit.analyses.adaptation.checkpoint import TrainingCheckpoint
from listenkit.analyses.adaptation.lora import LoraSpec, adapted_model, attach_lora
from listenkit.analyses.adaptation.readout import (
    ProsodyHead,
    layer_contributions,
    logit_lens_accuracy,
    readout_sweep,
    speech_frames,
)
from listenkit.analyses.adaptation.training import Recipe, train_asr, train_prosody
from listenkit.models.cache import CacheWarning
from listenkit.models.speech_model import SpeechModel
from listenkit.planted.encoder import planted_model, planted_pairs
from listenkit.stats import RatioOfMeans, paired_shift
from listenkit.stimuli.types import Pair, Utterance

SPEC = LoraSpec(r=4, alpha=8)


def _random_model(seed: int = 0) -> SpeechModel:
    """A tiny random Whisper (machinery only; claims run on real weights)."""
    torch.manual_seed(seed)
    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=3,
        n_vocab=51864, n_text_ctx=64, n_text_state=32, n_text_head=2, n_text_layer=2,
    )  # fmt: skip
    module = whisper.model.Whisper(dims)
    with torch.no_grad():
        for p in module.parameters():  # some are torch.empty in openai-whisper
            p.normal_(0.0, 0.2)
    return SpeechModel(name="random", module=module, source="test")


def _utterances(n: int, seed: int = 0) -> list[Utterance]:
    """Two classes told apart by their pitch (a sine at 150 vs 300 Hz), 1 s each."""
    rng = np.random.default_rng(seed)
    t = np.arange(16_000) / 16_000
    out = []
    for i in range(n):
        label = i % 2
        audio = 0.1 * np.sin(2 * np.pi * (150 if label == 0 else 300) * t)
        audio += 0.01 * rng.standard_normal(t.size)
        out.append(Utterance(id=f"u{i}", text="hello world", audio=audio.astype(np.float32),
                             meta={"label": label, "sentence": i // 2}))  # fmt: skip
    return out


def _pairs(utterances: list[Utterance]) -> list[Pair]:
    return [
        Pair(id=f"p{i}", attribute="pitch", level="high", clean=hi, corrupt=lo,
             meta={"label": 1, "sentence": i})
        for i, (lo, hi) in enumerate(zip(utterances[::2], utterances[1::2], strict=True))
    ]  # fmt: skip


def test_speech_frames():
    assert speech_frames(320) == 1 and speech_frames(321) == 2
    assert speech_frames(16_000 * 40) == 1500
    with pytest.raises(ValueError):
        speech_frames(0)


def test_an_untrained_adapter_is_the_identity():
    """peft initialises B = 0: the merged model's weights and sweeps equal the base's."""
    model = _random_model()
    merged = adapted_model(model, attach_lora(model, SPEC, seed=1), name="zero-step")
    for name, p in model.module.state_dict().items():
        assert torch.equal(p, merged.module.state_dict()[name]), name
    head = ProsodyHead(model.d_model, 2)
    pairs = _pairs(_utterances(4))
    a, b = readout_sweep(model, head, pairs), readout_sweep(merged, head, pairs)
    assert np.abs(a.patched - b.patched).max() <= 1e-6


@pytest.mark.slow
def test_an_untrained_adapter_on_real_tiny_en_gives_identical_curves(tiny_model, speech_clips):
    """The issue's control on real weights: max |diff| of the C1 sweep <= 1e-6."""
    merged = adapted_model(tiny_model, attach_lora(tiny_model, LoraSpec(), seed=0), name="zero")
    text, clean = speech_clips[0]
    noisy = np.clip(clean + 0.05 * np.random.default_rng(0).standard_normal(clean.size), -1, 1)
    noisy = Utterance(id="n", text=text, audio=noisy.astype(np.float32))
    pairs = [Pair(id="p", attribute="noise", level="x",
                  clean=Utterance(id="c", text=text, audio=clean), corrupt=noisy)]  # fmt: skip
    a = sweep(tiny_model, pairs, "encoder.attn_out", progress=False, floor=1e-6)
    b = sweep(merged, pairs, "encoder.attn_out", progress=False, floor=1e-6)
    assert np.abs(a.patched - b.patched).max() <= 1e-6
    assert np.abs(a.clean - b.clean).max() <= 1e-6


def test_lora_targets_every_value_projection_and_leaves_the_model_alone():
    model = _random_model()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    peft_encoder = attach_lora(model, SPEC, seed=0)
    names = [n for n, p in peft_encoder.named_parameters() if p.requires_grad]
    assert len(names) == 2 * model.encoder_layers
    assert all(".attn.value.lora_" in n for n in names)
    with pytest.raises(ValueError, match="matched no module"):
        attach_lora(model, LoraSpec(target=r"blocks\.\d+\.nothing"), seed=0)
    for name, p in model.module.state_dict().items():
        assert torch.equal(p, before[name])


def test_readout_sweep_controls():
    """Patching the whole residual gives back the source run at every layer; patching a
    run into itself changes nothing."""
    model = _random_model()
    head = ProsodyHead(model.d_model, 2)
    pairs = _pairs(_utterances(4))
    full = readout_sweep(model, head, pairs, site="encoder.resid")
    np.testing.assert_allclose(full.patched, np.repeat(full.source[:, None], 3, 1), atol=1e-5)
    selfish = [Pair(id=p.id, attribute="x", level="x", clean=p.corrupt, corrupt=p.corrupt,
                    meta=p.meta) for p in pairs]  # fmt: skip
    null = readout_sweep(model, head, selfish)
    assert np.abs(null.patched - null.base[:, None]).max() == 0.0
    short = Utterance(id="short", text="hello world", audio=np.full(800, 0.01, np.float32))
    bad = Pair(id="bad", attribute="x", level="x", clean=pairs[0].clean, corrupt=short,
               meta={"label": 1})  # fmt: skip
    with pytest.raises(ValueError, match="differ in length"):
        readout_sweep(model, head, [bad])


def test_layer_analyses_have_one_value_per_layer():
    model = _random_model()
    utterances = _utterances(4)
    contributions = layer_contributions(model, [u.audio for u in utterances])
    lens = logit_lens_accuracy(model, ProsodyHead(model.d_model, 2), utterances)
    assert len(contributions) == len(lens) == 3
    assert all(c > 0 for c in contributions) and all(0 <= a <= 1 for a in lens)


def test_training_lowers_the_loss_and_is_seeded():
    model = _random_model()
    train, val = _utterances(16), _utterances(4, seed=1)
    recipe = Recipe(lr=1e-2, head_lr=3e-2, steps=12, batch_size=4, seed=3, eval_every=6)
    _, head, log = train_prosody(model, train, val, recipe, n_classes=2, lora=SPEC)
    assert np.mean(log.loss[-3:]) < np.mean(log.loss[:3])
    assert [s for s, _ in log.validation] == [0, 6, 12]
    _, head2, log2 = train_prosody(model, train, val, recipe, n_classes=2, lora=SPEC)
    assert log.loss == log2.loss
    assert torch.equal(head.linear.weight, head2.linear.weight)
    _, _, frozen = train_prosody(model, train, val, recipe, n_classes=2, lora=None)
    assert len(frozen.loss) == 12
    with pytest.raises(ValueError, match="label"):
        train_prosody(model, [Utterance(id="x", text="x", audio=train[0].audio)], val, recipe,
                      n_classes=2, lora=SPEC)  # fmt: skip
    with pytest.raises(ValueError):
        Recipe(lr=0.0, steps=1, batch_size=1, seed=0)


def test_asr_training_runs_on_a_frozen_decoder():
    model = _random_model()
    decoder_before = {k: v.clone() for k, v in model.module.decoder.state_dict().items()}
    recipe = Recipe(lr=1e-2, steps=3, batch_size=2, seed=0, eval_every=3)
    _, log = train_asr(model, _utterances(4), _utterances(2, seed=1), recipe, lora=SPEC)
    assert len(log.loss) == 3 and np.all(np.isfinite(log.loss))
    for k, v in model.module.decoder.state_dict().items():
        assert torch.equal(v, decoder_before[k])
    assert all(p.requires_grad for p in model.module.decoder.parameters())  # restored


def _prosody_trainer(model, train, val, recipe, calls: list):
    """``cached_training``'s ``train``: LoRA + head by ``recipe``; records each call's
    checkpoint in ``calls``."""

    def run(checkpoint):
        calls.append(checkpoint)
        return Trained(*train_prosody(model, train, val, recipe, n_classes=2, lora=SPEC,
                                      checkpoint=checkpoint))  # fmt: skip

    return run


def test_adapter_cache_trains_once_and_retrains_a_tampered_entry(tmp_path):
    model = _random_model()
    train, val = _utterances(8), _utterances(4, seed=1)
    recipe = Recipe(lr=1e-2, head_lr=1e-2, steps=2, batch_size=4, seed=0, eval_every=2)
    calls = []
    run = _prosody_trainer(model, train, val, recipe, calls)

    first = cached_training("cell", "k1", model, run, n_classes=2, root=tmp_path)
    again = cached_training("cell", "k1", model, run, n_classes=2, root=tmp_path)
    assert len(calls) == 1 and again.from_cache and not first.from_cache
    merged_a = adapted_model(model, first.peft_encoder, name="a").module.state_dict()
    merged_b = adapted_model(model, again.peft_encoder, name="b").module.state_dict()
    assert all(torch.equal(merged_a[k], merged_b[k]) for k in merged_a)
    assert torch.equal(first.head.linear.weight, again.head.linear.weight)
    assert again.log.loss == pytest.approx(first.log.loss, abs=1e-6)
    weights = next((tmp_path / "cell-k1" / "adapter").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    with pytest.warns(CacheWarning, match="failed verification"):
        rebuilt = cached_training("cell", "k1", model, run, n_classes=2, root=tmp_path)
    assert len(calls) == 2 and not rebuilt.from_cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached_training("cell", "k1", model, run, n_classes=2, root=tmp_path).from_cache


class _Killed(Exception):
    pass


def _kill_at(step: int):
    def progress(done, _total):
        if done == step:
            raise _Killed

    return progress


@pytest.mark.parametrize("family", ["ser-prosody", "asr-noise"])
def test_a_killed_training_resumes_from_its_checkpoint_bit_for_bit(tmp_path, family):
    """Killed after step 5 (checkpoints every 2 steps: the last at step 4), the rerun
    resumes at step 5 and ends with the uninterrupted run's weights, optimiser path and
    log; once the entry is stored the checkpoint is gone."""
    model = _random_model()
    train, val = _utterances(6), _utterances(2, seed=1)
    recipe = Recipe(lr=1e-2, head_lr=1e-2, steps=7, batch_size=2, seed=3, eval_every=3)

    def trainer(checkpoint, progress=None, recipe=recipe):
        if family == "asr-noise":
            encoder, log = train_asr(model, train, val, recipe, lora=SPEC, progress=progress,
                                     checkpoint=checkpoint)  # fmt: skip
            return encoder, None, log
        return train_prosody(model, train, val, recipe, n_classes=2, lora=SPEC,
                             progress=progress, checkpoint=checkpoint)  # fmt: skip

    whole_encoder, whole_head, whole_log = trainer(None)
    checkpoint = TrainingCheckpoint(tmp_path / "run.pt", every=2)
    with pytest.raises(_Killed):
        trainer(checkpoint, progress=_kill_at(5))
    assert checkpoint.load()["step"] == 4
    steps = []
    encoder, head, log = trainer(checkpoint, progress=lambda d, _t: steps.append(d))
    assert steps == [5, 6, 7]  # resumed after step 4
    assert log.loss == whole_log.loss and log.validation == whole_log.validation
    assert log.examples == whole_log.examples
    a = adapted_model(model, whole_encoder, name="a").module.state_dict()
    b = adapted_model(model, encoder, name="b").module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    if whole_head is not None:
        assert torch.equal(whole_head.linear.weight, head.linear.weight)
    assert checkpoint.load()["step"] == 6  # the finished run's last checkpoint
    longer = Recipe(**{**recipe.to_dict(), "steps": 8})  # another recipe: starts over
    steps.clear()
    resumed = trainer(checkpoint, lambda d, _t: steps.append(d), longer)[2]
    assert steps == list(range(1, 9)) and resumed.loss == trainer(None, recipe=longer)[2].loss


def test_cached_training_removes_its_checkpoint_and_ignores_a_corrupt_one(tmp_path):
    model = _random_model()
    train, val = _utterances(4), _utterances(2, seed=1)
    recipe = Recipe(lr=1e-2, head_lr=1e-2, steps=3, batch_size=2, seed=0, eval_every=3)
    seen = []
    run = _prosody_trainer(model, train, val, recipe, seen)

    (tmp_path / ".cell-k2.checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(CacheWarning, match="unreadable"):
        trained = cached_training("cell", "k2", model, run, n_classes=2, root=tmp_path)
    assert [c.path for c in seen] == [tmp_path / ".cell-k2.checkpoint.pt"]
    assert len(trained.log.loss) == 3
    assert not seen[0].path.exists()


def _curve(model, pairs) -> RatioOfMeans:
    result = sweep(model, pairs, "encoder.attn_out", progress=False)
    rows = result.included
    return RatioOfMeans(result.patched[rows] - result.corrupt[rows, None],
                        (result.clean - result.corrupt)[rows])  # fmt: skip


def test_planted_listen_layer_moving_from_2_to_3_is_a_shift():
    pairs = planted_pairs(2, 8)
    before = _curve(planted_model(2), pairs)
    after = _curve(planted_model(2, reads=(1, 3, 2, 4)), pairs)
    test = paired_shift(before, after, rng=np.random.default_rng(0), n_resamples=1000)
    assert (test.l_star_before, test.l_star_after) == (2, 3)
    assert test.p_delta_positive >= 0.95


@pytest.mark.slow
def test_no_planted_shift_is_rarely_called_one():
    """Two independent stimulus draws through the same planted model (no peak: every
    region corrupted at random strengths): 200 times two disjoint random sets of 12 from
    a pool of 32 swept pairs; 'supported' in at most 5% of them, up to binomial noise."""
    pool = _curve(planted_model(None), planted_pairs(None, 32, seed=7))
    rng = np.random.default_rng(0)
    supported = 0
    for _ in range(200):
        order = rng.permutation(pool.n)
        a, b = pool.subset(order[:12]), pool.subset(order[12:24])
        supported += paired_shift(a, b, rng=rng, n_resamples=400).p_delta_positive >= 0.95
    assert supported / 200 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 200)


def test_linear_schedule_decays_to_zero():
    from listenkit.analyses.adaptation.training import _scheduler

    recipe = Recipe(lr=1e-2, steps=4, batch_size=1, seed=0, schedule="linear")
    optimiser = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    schedule, seen = _scheduler(optimiser, recipe), []
    for _ in range(recipe.steps):
        seen.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    np.testing.assert_allclose(seen, [1e-2, 7.5e-3, 5e-3, 2.5e-3])
    with pytest.raises(ValueError, match="schedule"):
        Recipe(lr=1e-2, steps=4, batch_size=1, seed=0, schedule="cosine")
