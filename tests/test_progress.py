"""The progress reporter of long analyses: throttling, and estimates after a resume."""

from __future__ import annotations

import pytest

from listenkit.experiments import progress as progress_module
from listenkit.experiments.progress import AnalysisProgress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


@pytest.fixture(autouse=True)
def main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines start with the xdist worker's name; these tests run as the main process."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def test_lines_name_the_xdist_worker(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    reporter = AnalysisProgress("x", "pairs", interval=0)
    written = lines(reporter)
    reporter(8, 8)
    assert written == ["[gw1] x: 8/8 pairs, 0s elapsed"]


def lines(reporter: AnalysisProgress) -> list[str]:
    written: list[str] = []
    reporter._write = written.append  # type: ignore[method-assign]
    return written


def test_estimate_is_elapsed_times_items_left_over_items_done(clock: Clock) -> None:
    reporter = AnalysisProgress("E4 m noise heads", "pairs", interval=0)
    written = lines(reporter)
    clock.now += 120
    reporter(8, 32)
    assert written == ["[main] E4 m noise heads: 8/32 pairs, 2m00s elapsed, ~6m00s left"]


def test_reports_are_throttled_but_the_last_is_always_written(clock: Clock) -> None:
    reporter = AnalysisProgress("x", "pairs", interval=30)
    written = lines(reporter)
    for done in (8, 16, 24):
        clock.now += 10
        reporter(done, 32)
    clock.now += 10
    reporter(32, 32)
    assert [line.split(": ")[1].split(",")[0] for line in written] == ["8/32 pairs", "32/32 pairs"]


def test_resumed_batches_are_counted_but_not_timed(clock: Clock) -> None:
    """Three batches of 8 come from the checkpoint (no time); the fourth takes 60 s, so
    the 8 left take about 60 s too, not the 20 s a rate over all 32 pairs would give."""
    reporter = AnalysisProgress("x", "pairs", interval=0, resumed={0, 8, 16})
    written = lines(reporter)
    for done in (8, 16, 24):
        reporter(done, 40)
    assert written == []
    clock.now += 60
    reporter(32, 40)
    assert written == ["[main] x: 32/40 pairs (24 from checkpoint), 1m00s elapsed, ~1m00s left"]
    clock.now += 60
    reporter(40, 40)
    assert written[-1] == "[main] x: 40/40 pairs (24 from checkpoint), 2m00s elapsed"


def test_a_fully_resumed_analysis_still_reports_its_end(clock: Clock) -> None:
    reporter = AnalysisProgress("x", "pairs", interval=0, resumed={0, 8})
    written = lines(reporter)
    reporter(8, 16)
    reporter(16, 16)
    assert written == ["[main] x: 16/16 pairs (16 from checkpoint), 0s elapsed"]


def test_a_training_resumed_at_a_step_times_only_the_steps_it_runs(clock: Clock) -> None:
    reporter = AnalysisProgress("E3 training", "steps", interval=0)
    written = lines(reporter)
    reporter.resume(40)  # a checkpoint at step 40 of 60
    clock.now += 50
    reporter(50, 60)
    assert written == [
        "[main] E3 training: 50/60 steps (40 from checkpoint), 50s elapsed, ~50s left"
    ]
