"""E1 analyses, the evidence ledger, the CLI, and the pre-registration's consistency."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.stimuli import preregistration
from listenkit.claims.ledger import collect_ledger, validate_ledger, write_ledger_entry
from listenkit.report.cli import main as cli_main
from listenkit.stats import change_point, correlational_agreement, peak_location
from listenkit.stimuli.families import DEFAULT_FAMILIES


def test_change_point_is_the_largest_increase():
    # profile over layers 0..4; increases 0.1, 0.5, 0.1, -0.2 -> layer 2
    assert change_point(np.array([0.0, 0.1, 0.6, 0.7, 0.5])) == 2
    assert list(change_point(np.array([[0, 1, 1.1], [0, 0.1, 1.0]]))) == [1, 2]


def test_agreement_when_profiles_jump_where_the_causal_peak_is():
    rng = np.random.default_rng(0)
    n = 20
    effects = rng.normal(0, 0.05, size=(n, 4)) + np.array([0.1, 0.2, 0.9, 0.3])
    cka = 1 - (np.array([0.0, 0.05, 0.1, 0.6, 0.65]) + rng.normal(0, 0.01, size=(n, 5)))
    ratio = np.array([1.0, 1.0, 1.1, 1.0, 1.6]) + rng.normal(0, 0.01, size=(n, 5))
    result = correlational_agreement(effects, cka, ratio, [1, 2, 3, 4], rng=rng, n_resamples=500)
    assert result["L_c_observed"] == 3 and result["L_n_observed"] == 4
    assert result["p_cka"] == 1.0 and result["p_norm"] == 1.0  # |4 - 3| <= 1 counts
    far = np.array([1.6, 1.0, 1.0, 1.0, 1.0]) + rng.normal(0, 0.01, size=(n, 5))
    far[:, 0] = 1.0
    far[:, 1] = 1.6
    result = correlational_agreement(effects, cka, far, [1, 2, 3, 4], rng=rng, n_resamples=500)
    assert result["L_n_observed"] == 1 and result["p_norm"] == 0.0


def test_peak_location_samples_layer_numbers():
    effects = np.tile([0.0, 1.0, 0.0], (5, 1))
    result = peak_location(effects, [1, 2, 3], rng=np.random.default_rng(0), n_resamples=50)
    assert result.observed == 2 and set(result.samples) == {2}


def test_ledger_is_sorted_without_timings_and_validated(tmp_path):
    for model in ("whisper-base", "whisper-tiny.en"):
        write_ledger_entry(tmp_path, {
            "kind": "claim", "claim": "C1", "model": model, "family": "noise",
            "verdict": "not supported" if model == "whisper-base" else "error",
            "wall_time_s": 3.0, "message": "boom",
        })  # fmt: skip
    ledger = collect_ledger(tmp_path, profile="smoke")
    assert [e["model"] for e in ledger["claims"]] == ["whisper-base", "whisper-tiny.en"]
    assert all("wall_time_s" not in e for e in ledger["claims"])
    expected = [
        ("C1", "whisper-base", "noise"),
        ("C1", "whisper-tiny.en", "noise"),
        ("C2", "x", "y"),
    ]
    problems = validate_ledger(ledger, expected, tmp_path)
    assert any("no verdict for ('C2'" in p for p in problems)
    assert any("error: boom" in p for p in problems)
    assert any("missing" in p and "evidence.json" in p for p in problems)
    assert any("claims.html" in p for p in problems)
    with pytest.raises(ValueError, match="unknown verdict"):
        write_ledger_entry(tmp_path, {"kind": "claim", "claim": "C", "model": "m", "family": "f",
                                      "verdict": "maybe"})  # fmt: skip


def test_default_families_are_the_preregistered_ones():
    prereg = preregistration()
    known = prereg["families"]
    for name, spec in DEFAULT_FAMILIES.items():
        skip = ("description", "site", "pairs", "sentence_order", "gate_median_gap_nats")
        registered = {k: v for k, v in known[name].items() if k not in skip}
        assert registered == spec


def test_cli_sweep_writes_csv_json_and_plot(tmp_path, capsys):
    code = cli_main([
        "sweep", "--model", "whisper-tiny.en", "--family", "noise", "--site", "encoder.mlp_out",
        "--pairs", "2", "--resamples", "200", "--quiet", "--out", str(tmp_path),
    ])  # fmt: skip
    assert code == 0
    for name in ("sweep.csv", "sweep.json", "curve.csv", "curve.png"):
        assert (tmp_path / name).is_file()
    assert (
        json.loads((tmp_path / "sweep.json").read_text())["site"]["component"] == "encoder.mlp_out"
    )
    assert "peak layer" in capsys.readouterr().out


def test_cli_gc_writes_margins_curve_and_plot(tmp_path, capsys):
    code = cli_main([
        "gc", "--model", "whisper-tiny.en", "--family", "conflict", "--per-flip-type", "1",
        "--resamples", "200", "--quiet", "--out", str(tmp_path),
    ])  # fmt: skip
    assert code == 0
    for name in ("gc.json", "gc_curve.csv", "gc.png"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "gc.json").read_text())
    assert saved["text_site"] == {
        "component": "decoder.self_kv", "layer": None, "positions": "prompt", "heads": None
    }  # fmt: skip
    header = (tmp_path / "gc_curve.csv").read_text().splitlines()[0]
    assert header.startswith("layer,n,dA,dA_low,dA_high,dT")
    assert "l*_gc" in capsys.readouterr().out
