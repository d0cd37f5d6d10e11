"""``listenkit report RUN --times``: each cell's compute time, read from its evidence."""

from __future__ import annotations

import json

import pytest

from listenkit.report.cli import main as cli_main
from listenkit.report.compute_times import CAVEAT, cell_times, markdown_times

EXPERIMENT_OF = {"C1": "E1", "C1-sharp": "E1", "C4": "E3"}


def _evidence(run, claim, model, family, timings, commit="793d921abc"):
    folder = run / claim / f"{model}-{family}"
    folder.mkdir(parents=True)
    (folder / "evidence.json").write_text(
        json.dumps({"claim": claim, "model": model, "family": f"a description of {family}",
                    "timings_s": timings, "listenkit_commit": commit})
    )  # fmt: skip


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "2026-12-04-v3-e3-full"
    # E1's claims read one analysis: its stages count once
    _evidence(run, "C1", "whisper-base", "noise", {"sweeps_s": 600.0, "profiles_s": 60.0})
    _evidence(run, "C1-sharp", "whisper-base", "noise", {"sweeps_s": 600.0, "profiles_s": 60.0})
    _evidence(run, "C4", "whisper-tiny.en", "ser-prosody", {
        "stage_before_s": 300.0,
        "train_after-0_s": 1200.0, "stage_after-0_s": 300.0,
        "train_after-1_s": 1800.0, "stage_after-1_s": 300.0,
        "train_control-zero-step_s": 1.0, "stage_control-zero-step_s": 179.0,
    })  # fmt: skip
    _evidence(run, "C9", "whisper-base", "noise", {})  # no times: no row
    (run / "secondary" / "x" / "whisper-base-noise").mkdir(parents=True)
    return run


def test_cells_count_shared_stages_once_and_e3_reports_time_per_seed(run):
    cells = cell_times([run], EXPERIMENT_OF)
    by_cell = {(c.experiment, c.model, c.family): c for c in cells}
    assert set(by_cell) == {
        ("E1", "whisper-base", "noise"),
        ("E3", "whisper-tiny.en", "ser-prosody"),
    }
    e1 = by_cell["E1", "whisper-base", "noise"]
    assert e1.claims == ("C1", "C1-sharp") and e1.total_s == 660.0 and e1.run == run.name
    e3 = by_cell["E3", "whisper-tiny.en", "ser-prosody"]
    assert e3.per_seed_s() == [1500.0, 2100.0]
    assert e3.per_control_s() == {"control-zero-step": 180.0}
    text = markdown_times(cells)
    row = "| E1 | whisper-base | noise | profiles 1.0 min, sweeps 10.0 min | 11.0 min | 793d921 |"
    assert f"| {run.name} {row}" in text
    assert "whisper-tiny.en ser-prosody: 30.0 min (range 25.0 min-35.0 min, 2 seeds)" in text
    assert "controls control-zero-step 3.0 min" in text and CAVEAT in text


def test_the_cli_prints_times_and_says_when_there_are_none(run, tmp_path, capsys):
    prereg = tmp_path / "prereg.toml"
    prereg.write_text("[e1.claims.C1]\n[e1.claims.C1-sharp]\n[e3.claims.C4]\n")
    assert cli_main(["report", str(run), "--times", "--preregistration", str(prereg)]) == 0
    out = capsys.readouterr().out
    assert "| E1 | whisper-base | noise |" in out and "2 seeds" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["report", str(empty), "--times"]) == 0
    assert capsys.readouterr().out == "no evidence file records stage times\n"
