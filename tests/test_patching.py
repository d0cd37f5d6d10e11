"""The sweep engine on real Whisper weights and real speech."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from listenkit import DegenerateSiteWarning, Site, SiteError, Sweep, sweep
from listenkit.engine.batch import PatchItem, RunInput, ScoringRow
from listenkit.engine.patching import run_patching
from listenkit.planted.encoder import planted_model, planted_pairs
from listenkit.stimuli import noise_pairs, textbank


@pytest.fixture(scope="module")
def real_pairs():
    return list(noise_pairs(textbank()[:2], 0.0, "white", seed=20260226))


def _straightforward_attn_out_sweep(model, pair) -> np.ndarray:
    """Written from scratch with forward hooks and full forward passes, no engine code."""
    module = model.module
    tokens = [*model.sot_sequence, *model.text_tokens(pair.text), model.tokenizer.eot]
    inputs = torch.tensor([tokens[:-1]])
    targets = torch.tensor(tokens[len(model.sot_sequence) :])

    def score(mel) -> float:
        logits = module(mel[None], inputs)[0, len(model.sot_sequence) - 1 :]
        return float(torch.log_softmax(logits.double(), -1).gather(-1, targets[:, None]).sum())

    with torch.inference_mode():
        clean_mel, corrupt_mel = model.log_mel(pair.clean.audio), model.log_mel(pair.corrupt.audio)
        saved = {}
        handles = [
            block.attn.register_forward_hook(
                lambda _m, _a, out, i=i: saved.__setitem__(i, out[0].clone())
            )
            for i, block in enumerate(module.encoder.blocks)
        ]
        m_clean = score(clean_mel)
        for h in handles:
            h.remove()
        m_corrupt = score(corrupt_mel)
        effects = []
        for i, block in enumerate(module.encoder.blocks):
            handle = block.attn.register_forward_hook(lambda _m, _a, out, i=i: (saved[i], *out[1:]))
            m_patched = score(corrupt_mel)
            handle.remove()
            effects.append((m_patched - m_corrupt) / (m_clean - m_corrupt))
    return np.array(effects)


def test_engine_matches_a_straightforward_hook_implementation(base_model, real_pairs):
    pair = real_pairs[0]
    result = sweep(base_model, [pair], "encoder.attn_out", progress=False)
    expected = _straightforward_attn_out_sweep(base_model, pair)
    print("whisper-base attn_out effects:", np.round(result.effects[0], 4))
    np.testing.assert_allclose(result.effects[0], expected, atol=1e-5)


@pytest.mark.parametrize(
    "site",
    [
        Site(component="encoder.head", heads=(2, 4)),
        Site(component="decoder.self_attn_out"),
        Site(component="decoder.cross_attn_out"),
    ],
    ids=["encoder.head", "decoder.self_attn_out", "decoder.cross_attn_out"],
)
def test_backends_agree_on_real_weights(tiny_model, real_pairs, site):
    hooks = sweep(tiny_model, real_pairs, site, reference="greedy", progress=False)
    traced = sweep(
        tiny_model, real_pairs, site, reference="greedy", backend="nnsight", progress=False
    )
    np.testing.assert_allclose(traced.effects, hooks.effects, atol=1e-5)


def test_sweep_exports(tiny_model, real_pairs, tmp_path):
    result = sweep(tiny_model, real_pairs, "encoder.block_write", layers=[2, 3], progress=False)
    assert result.layers == (2, 3)
    assert (
        Sweep.from_dict(json.loads(result.to_json(tmp_path / "s.json"))).to_json()
        == result.to_json()
    )
    csv_text = result.to_csv(tmp_path / "s.csv")
    assert csv_text.splitlines()[0] == "id,layer,clean,corrupt,patched,effect,included"
    assert len(csv_text.splitlines()) == 1 + 2 * len(real_pairs)
    curve = result.curve(seed=1, n_resamples=500)
    assert curve.layers == (2, 3) and curve.n == int(result.included.sum())
    assert all(curve.low <= curve.mean) and all(curve.mean <= curve.high)


def test_noising_mode_is_the_mirror_of_denoising(tiny_model, real_pairs):
    with pytest.warns(DegenerateSiteWarning):
        noised = sweep(tiny_model, real_pairs, "encoder.resid", mode="noise", progress=False)
    # putting the whole corrupt residual into the clean run reproduces the corrupt run
    np.testing.assert_allclose(noised.patched, noised.corrupt[:, None].repeat(4, 1), atol=1e-4)
    assert noised.source is noised.corrupt and noised.base is noised.clean
    np.testing.assert_allclose(noised.included_effects(), 1.0, atol=1e-5)
    np.testing.assert_array_equal(noised.included, noised.clean - noised.corrupt >= 1.0)
    np.testing.assert_allclose(noised.ratio().value(), 1.0, atol=1e-5)


def test_bad_requests_are_clear_errors(tiny_model, real_pairs):
    with pytest.raises(SiteError, match=r"valid: encoder\.resid"):
        sweep(tiny_model, real_pairs, "encoder.attention", progress=False)
    with pytest.raises(SiteError, match=r"valid layers are 1\.\.4"):
        sweep(tiny_model, real_pairs, "encoder.attn_out", layers=[5], progress=False)
    with pytest.raises(ValueError, match="unknown metric"):
        sweep(tiny_model, real_pairs, "encoder.attn_out", metric="accuracy", progress=False)
    with pytest.raises(ValueError, match="continuations"):
        sweep(tiny_model, real_pairs, "encoder.attn_out", metric="logit_diff", progress=False)


def test_misaligned_decoder_positions_are_an_error(tiny_model, real_pairs):
    sot = tuple(tiny_model.sot_sequence)
    item = PatchItem(
        id="x",
        source=RunInput(
            audio=real_pairs[0].clean.audio, rows=(ScoringRow((*sot, 100, 200), len(sot)),)
        ),
        base=RunInput(audio=real_pairs[0].corrupt.audio, rows=(ScoringRow((*sot, 100), len(sot)),)),
    )
    with pytest.raises(SiteError, match="equal length"):
        run_patching(tiny_model, [item], [Site(component="decoder.resid")], progress=False)


def test_non_finite_activations_are_an_error():
    model = planted_model(None)
    with torch.no_grad():
        model.module.encoder.blocks[1].mlp[0].bias.fill_(float("nan"))
        model.module.encoder.blocks[1].mlp[2].weight[0, 0] = 1.0
    with pytest.raises(FloatingPointError, match="non-finite"):
        sweep(model, planted_pairs(2, 1), "encoder.attn_out", progress=False)


def test_unaligned_pairs_are_refused_unless_allowed(tiny_model, real_pairs):
    from listenkit.stimuli.types import Pair

    p = real_pairs[0]
    cut = p.corrupt.audio[: int(p.corrupt.audio.size * 0.95)]
    unaligned = Pair.from_arrays(p.clean.audio, cut, p.text, id="unaligned")
    with pytest.raises(ValueError, match=r"differ in length.*allow_unaligned=True"):
        sweep(tiny_model, [unaligned], "encoder.attn_out", layers=[1], progress=False)
    result = sweep(tiny_model, [unaligned], "encoder.attn_out", layers=[1], progress=False,
                   allow_unaligned=True)  # fmt: skip
    assert result.patched.shape == (1, 1)


def test_machinery_checks_pass_on_the_engine_and_can_fail(tiny_model, real_pairs):
    """The E1 sanity checks: the whole-residual patch reproduces the clean metric (within
    1e-4 nats) and a run patched into itself reproduces the base metric exactly; the
    degenerate check does fail for a site that is not the whole residual."""
    from listenkit.analyses.listen_layer.patch_sweep import pair_items
    from listenkit.engine.patching import degenerate_patch_deviation, null_patch_deviation

    items = pair_items(tiny_model, real_pairs, "ref_logprob", reference="greedy", mode="denoise")
    assert degenerate_patch_deviation(tiny_model, items) <= 1e-4
    assert degenerate_patch_deviation(tiny_model, items, site="encoder.attn_out") > 0.1
    null = null_patch_deviation(
        tiny_model,
        items,
        [Site(component="encoder.attn_out"), Site(component="encoder.head", heads=(1,))],
    )
    assert set(null) == {"encoder.attn_out", "encoder.head"}
    assert max(null.values()) == 0.0
