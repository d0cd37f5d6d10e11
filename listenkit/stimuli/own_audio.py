"""Your own recordings as minimal pairs (``listenkit sweep --audio DIR``).

- ``noisy_pairs_from``: each utterance (clean) against itself plus noise at an SNR over
  its speech span, clean and corrupt at one shared level (``pairs.noisy_pair``);
- ``load_pairs_manifest``: clean/corrupt recordings listed in a JSONL manifest, one
  ``{"id": ..., "text": ..., "clean": "a.wav", "corrupt": "b.wav"}`` per line (paths
  relative to the manifest);
- ``parse_corruption``: ``noise:SNR_DB`` or ``noise:SNR_DB:KIND`` (white, pink, babble).

Files are read by ``loaders.load_audio_file``: any format libsndfile reads; another
sample rate is resampled to 16 kHz and stereo is downmixed, both recorded in the meta.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from listenkit.stimuli.loaders import load_audio_file
from listenkit.stimuli.noise import NOISE_KINDS
from listenkit.stimuli.pairs import _babble_clips, noisy_pair
from listenkit.stimuli.types import Pair, Utterance

__all__ = ["load_pairs_manifest", "noisy_pairs_from", "parse_corruption"]


def parse_corruption(spec: str) -> tuple[str, float]:
    """``"noise:0"`` -> ``("white", 0.0)``; ``"noise:5:pink"`` -> ``("pink", 5.0)``."""
    parts = spec.split(":")
    if parts[0] != "noise" or len(parts) not in (2, 3):
        raise ValueError(f"--corrupt must be noise:SNR_DB or noise:SNR_DB:KIND, got {spec!r}")
    try:
        snr = float(parts[1])
    except ValueError:
        raise ValueError(f"--corrupt {spec!r}: the SNR {parts[1]!r} is not a number") from None
    kind = parts[2] if len(parts) == 3 else "white"
    if kind not in NOISE_KINDS:
        raise ValueError(
            f"--corrupt {spec!r}: unknown noise {kind!r}; use {', '.join(NOISE_KINDS)}"
        )
    return kind, snr


def noisy_pairs_from(
    utterances: Sequence[Utterance], snr_db: float, noise: str = "white", *, seed: int = 0
) -> list[Pair]:
    """Each utterance against itself plus ``noise`` at ``snr_db`` (noise of utterance i
    from ``default_rng([seed, i])``), one shared level per pair."""
    if not utterances:
        raise ValueError("no utterances")
    clips = _babble_clips() if noise == "babble" else ()
    return [
        noisy_pair(f"own-{u.id}", u.text, u.audio, snr_db, noise, [int(seed), i],
                   babble_clips=clips, meta=dict(u.meta))
        for i, u in enumerate(utterances)
    ]  # fmt: skip


def load_pairs_manifest(path: str | Path) -> list[Pair]:
    """Clean/corrupt recordings from a JSONL manifest (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs manifest not found: {path}")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pid, text = str(row["id"]), str(row["text"])
            clean, corrupt = path.parent / row["clean"], path.parent / row["corrupt"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path}:{number}: need a JSON object with id, text, clean, corrupt ({err})"
            ) from None
        a = load_audio_file(clean, text=text, id=f"{pid}/clean")
        b = load_audio_file(corrupt, text=text, id=f"{pid}/corrupt")
        if abs(a.audio.size - b.audio.size) > 0.01 * max(a.audio.size, b.audio.size):
            raise ValueError(
                f"{path}:{number}: {clean.name} and {corrupt.name} differ in length by more "
                f"than 1% ({a.audio.size} vs {b.audio.size} samples at 16 kHz): frame-by-frame "
                "patching needs time-aligned pairs"
            )
        pairs.append(
            Pair(
                id=pid,
                attribute="own",
                level="manifest",
                clean=a,
                corrupt=b,
                meta={"manifest": str(path), "line": number},
            )
        )
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs
