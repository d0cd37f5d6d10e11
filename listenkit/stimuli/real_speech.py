"""Real transcribed speech: the 12 clips in the pocketsphinx 5.1.1 source distribution.

5 LibriVox "Sense and Sensibility" sentences, 5 "cards" utterances, "go forward
ten meters" and one TIDIGITS digit string; 16 kHz, 16-bit, about 40 s in all.
(c) Carnegie Mellon University, BSD-2-Clause; the license travels with the files.

On first use the source distribution is fetched from the package index with pip
(pinned by sha256), the clips are extracted into the listenkit cache, and later
uses read the cache. Pass ``archive=`` to use a local copy instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from filelock import FileLock

from listenkit.models.cache import cache_root
from listenkit.stimuli.types import Utterance

__all__ = ["POCKETSPHINX_SDIST_SHA256", "pocketsphinx_clips"]

POCKETSPHINX_VERSION = "5.1.1"
POCKETSPHINX_SDIST_SHA256 = "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
_ROOT = f"pocketsphinx-{POCKETSPHINX_VERSION}"
_DIGIT_WORDS = {"z": "zero", "o": "oh"} | {
    str(i): w for i, w in enumerate("zero one two three four five six seven eight nine".split())
}


def _download_sdist(target: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--quiet", "-d", str(target),
        f"pocketsphinx=={POCKETSPHINX_VERSION}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    archive = target / f"{_ROOT}.tar.gz"
    if result.returncode != 0 or not archive.is_file():
        raise RuntimeError(
            "could not fetch the pocketsphinx 5.1.1 source distribution from the package "
            f"index (pip said: {result.stderr.strip()[-400:]}); download "
            f"pocketsphinx-{POCKETSPHINX_VERSION}.tar.gz yourself and pass archive=PATH"
        )
    return archive


def _extract(archive: Path, dest: Path) -> None:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != POCKETSPHINX_SDIST_SHA256:
        raise RuntimeError(
            f"{archive}: sha256 {digest} is not the pinned {POCKETSPHINX_SDIST_SHA256}"
        )
    wanted = re.compile(
        rf"^{_ROOT}/(LICENSE|test/data/(librivox/.*\.(wav|txt)|librivox/fileids|cards/.*\.wav|"
        r"cards/cards\.transcription|goforward\.raw|tidigits/dhd\.2934z\.raw))$"
    )
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and wanted.match(member.name):
                relative = Path(member.name).relative_to(_ROOT)
                out = dest / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                out.write_bytes(source.read())


def _ensure_extracted(archive: Path | None) -> Path:
    final = cache_root() / "datasets" / _ROOT
    if (final / "LICENSE").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "LICENSE").is_file():
            return final
        with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
            staging = Path(tmp) / "staging"
            staging.mkdir()
            source = archive if archive is not None else _download_sdist(Path(tmp))
            _extract(Path(source), staging)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
    return final


def _read_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def _read_wav(path: Path) -> np.ndarray:
    import wave

    with wave.open(str(path)) as handle:
        if (handle.getframerate(), handle.getsampwidth(), handle.getnchannels()) != (16000, 2, 1):
            raise ValueError(f"{path}: expected 16 kHz 16-bit mono")
        return _read_pcm16(handle.readframes(handle.getnframes()))


def pocketsphinx_clips(*, archive: str | Path | None = None) -> list[Utterance]:
    """The 12 real transcribed clips as ``Utterance``s (ids ``pocketsphinx/<set>/<name>``)."""
    root = _ensure_extracted(None if archive is None else Path(archive))
    data = root / "test" / "data"
    license_text = "pocketsphinx 5.1.1 test data, (c) Carnegie Mellon University, BSD-2-Clause"
    clips: list[Utterance] = []

    def add(set_name: str, name: str, text: str, audio: np.ndarray) -> None:
        meta = {"source": license_text, "license_file": str(root / "LICENSE")}
        clips.append(
            Utterance(id=f"pocketsphinx/{set_name}/{name}", text=text, audio=audio, meta=meta)
        )

    for fileid in (data / "librivox" / "fileids").read_text().split():
        text = (data / "librivox" / f"{fileid}.txt").read_text().strip()
        add("librivox", fileid, text, _read_wav(data / "librivox" / f"{fileid}.wav"))
    for line in (data / "cards" / "cards.transcription").read_text().splitlines():
        match = re.match(r"<s>\s*(.*?)\s*</s>\s*\((\w+)\)", line.strip())
        if match:
            text, fileid = match.groups()
            add("cards", fileid, text, _read_wav(data / "cards" / f"{fileid}.wav"))
    add(
        "goforward",
        "goforward",
        "go forward ten meters",
        _read_pcm16((data / "goforward.raw").read_bytes()),
    )
    digits = " ".join(_DIGIT_WORDS[c] for c in "2934z")
    add(
        "tidigits",
        "dhd.2934z",
        digits,
        _read_pcm16((data / "tidigits" / "dhd.2934z.raw").read_bytes()),
    )
    return clips
