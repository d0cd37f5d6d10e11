"""Planted truth: the engine finds a listen layer we built in, and no peak where none is."""

from __future__ import annotations

import warnings

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from listenkit import DegenerateSiteWarning, sweep
from listenkit.planted.encoder import N_LAYERS, planted_model, planted_pairs
from listenkit.stats import (
    bootstrap_argmax,
    cross_fitted_sharpness,
    probability_in,
    split_halves,
)
from listenkit.stimuli.types import Pair

N_PAIRS = 16


@pytest.fixture(scope="module")
def model():
    return planted_model(None)


@pytest.mark.parametrize("k", [2, 3])
def test_sweep_recovers_the_planted_layer(model, k):
    result = sweep(model, planted_pairs(k, N_PAIRS), "encoder.attn_out", progress=False)
    effects = result.included_effects()
    assert len(effects) == N_PAIRS
    rng = np.random.default_rng(20260226)
    samples = bootstrap_argmax(result.ratio(), result.layers, rng=rng, n_resamples=2000)
    assert probability_in(samples, {k}) >= 0.95
    in_a = split_halves(result.included_ids, salt="planted")
    sharp = cross_fitted_sharpness(result.ratio(), result.layers, in_a, rng=rng, n_resamples=2000)
    assert sharp["L_star"] == k and sharp["sharp"], sharp
    others = [layer for layer in result.layers if layer != k]
    assert np.abs(effects[:, [layer - 1 for layer in others]]).max() < 0.05


def test_no_unique_peak_is_declared_without_a_planted_layer(model):
    result = sweep(model, planted_pairs(None, 24), "encoder.attn_out", progress=False)
    rng = np.random.default_rng(20260226)
    in_a = split_halves(result.included_ids, salt="planted")
    sharp = cross_fitted_sharpness(result.ratio(), result.layers, in_a, rng=rng, n_resamples=2000)
    assert not sharp["sharp"], sharp
    samples = bootstrap_argmax(result.ratio(), result.layers, rng=rng, n_resamples=2000)
    assert max(probability_in(samples, {layer}) for layer in result.layers) < 0.95


pair_seeds = st.integers(0, 2**16)


def _pairs(seed: int, n: int = 2) -> list[Pair]:
    return planted_pairs(1 + seed % N_LAYERS, n, seed=seed)


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=pair_seeds)
def test_identical_clean_and_corrupt_are_all_excluded(model, seed):
    same = [Pair(id=p.id, clean=p.clean, corrupt=p.clean, attribute="none") for p in _pairs(seed)]
    result = sweep(model, same, "encoder.attn_out", progress=False)
    assert not result.included.any()
    assert np.isnan(result.effects).all()  # never divided by ~0
    assert set(result.excluded_ids) == {p.id for p in same}


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=pair_seeds)
def test_full_residual_patch_recovers_exactly_one(model, seed):
    with pytest.warns(DegenerateSiteWarning):
        result = sweep(model, _pairs(seed), "encoder.resid", progress=False)
    np.testing.assert_allclose(result.included_effects(), 1.0, atol=1e-6)


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=pair_seeds, component=st.sampled_from(["encoder.attn_out", "decoder.cross_attn_out"]))
def test_effects_do_not_depend_on_batch_size_or_backend(model, seed, component):
    pairs = _pairs(seed, n=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = sweep(model, pairs, component, batch_size=1, progress=False)
        three = sweep(model, pairs, component, batch_size=3, progress=False)
        traced = sweep(model, pairs, component, batch_size=2, backend="nnsight", progress=False)
    for other in (three, traced):
        np.testing.assert_allclose(other.patched, one.patched, atol=1e-5)
        np.testing.assert_allclose(other.effects, one.effects, atol=1e-5)


def test_same_inputs_same_numbers(model):
    pairs = _pairs(7, n=2)
    a = sweep(model, pairs, "encoder.mlp_out", progress=False)
    b = sweep(model, pairs, "encoder.mlp_out", progress=False)
    assert a.to_json() == b.to_json()
