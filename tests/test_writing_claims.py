"""docs/writing-claims.md runs as written: its three files, in a pytester folder, on a
planted model whose listen layer is known (layer 4 of 4: supported; layer 2: not)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

import listenkit
from listenkit.planted.encoder import planted_model, planted_pairs

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-claims.md"


def example_files() -> dict[str, str]:
    """The code blocks that follow a ``<!-- file: PATH -->`` marker, by path."""
    pattern = r"<!-- file: (\S+) -->\n```\w+\n(.*?)```"
    return dict(re.findall(pattern, DOC.read_text(), flags=re.S))


def test_the_example_is_as_short_as_promised():
    files = example_files()
    assert set(files) == {"claims/preregistration.toml", "conftest.py", "claims/test_my_model.py"}
    python = [f for name, f in files.items() if name.endswith(".py")]
    assert sum(len(f.strip().splitlines()) for f in python) <= 30
    assert len(files["claims/preregistration.toml"].strip().splitlines()) <= 10


def _write_recordings(root: Path, pairs) -> None:
    for kind in ("clean", "corrupt"):
        folder = root / "audio" / "noise" / kind
        folder.mkdir(parents=True)
        for i, pair in enumerate(pairs):
            utterance = getattr(pair, kind)
            soundfile.write(folder / f"{i:02d}.wav", utterance.audio, 16_000, subtype="FLOAT")
            (folder / f"{i:02d}.txt").write_text(utterance.text)


@pytest.mark.parametrize(("reads", "verdict", "l_star"), [
    ((1, 4, 3, 2), "supported", 4),  # block 4 reads the corrupted region: L* = 4 of 4
    ((1, 2, 3, 4), "not supported", 2),  # block 2 does: L* = 2, not in the last third
])  # fmt: skip
def test_the_documented_claim_runs_end_to_end(pytester, monkeypatch, reads, verdict, l_star):
    for name, text in example_files().items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(text)
    _write_recordings(pytester.path, planted_pairs(2, 12))  # noise in region C_2 only
    model = planted_model(4, reads=reads)
    loaded = []
    monkeypatch.setattr(listenkit, "load_model", lambda path: loaded.append(path) or model)
    start = time.perf_counter()
    pytester.inline_run("claims", "-p", "no:cacheprovider")
    print(f"the documented claim ran in {time.perf_counter() - start:.1f} s")
    ledger = json.loads((pytester.path / "reports" / "verdicts.json").read_text())
    [entry] = ledger["claims"]
    assert loaded == ["checkpoints/my-whisper.pt"]
    cell = (entry["claim"], entry["model"], entry["family"])
    assert cell == ("late-listen-layer", "my-whisper", "noise")
    assert entry["verdict"] == verdict and entry["L_star"] == l_star
    assert entry["observed"] == (1.0 if verdict == "supported" else 0.0)
    evidence = pytester.path / "reports" / "late-listen-layer" / "my-whisper-noise"
    assert json.loads((evidence / "evidence.json").read_text())["preregistration_sha256"]
    assert np.isfinite(entry["observed"])
