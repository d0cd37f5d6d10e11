"""``--adopt-stages-from COMMIT``: the cache-key inputs of an earlier commit of the suite.

The claims plugin salts every analysis key with the pre-registration's sha256 and the
suite's code (``suite_sha256``), and the key covers listenkit's code (``code_sha256``).
An origin recomputes those three at ``COMMIT`` from ``git archive``, so that a run at a
later commit can adopt the stages the earlier one finished (``AnalysisCache(adopt=)``).
Only an ancestor of the checkout's HEAD is accepted: stages are adopted forward.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from listenkit.claims.session import folder_sha256
from listenkit.experiments.cache import code_sha256
from listenkit.stage_origin import Origin

__all__ = ["origin_at", "suite_sha256"]


def suite_sha256(root: Path, claims_folder: Path) -> str:
    """The suite's own code that can shape an analysis: ``root/fixtures/`` and the
    ``conftest.py`` files of ``root`` and of the claims folder."""
    files = [root / "conftest.py", claims_folder / "conftest.py"]
    parts = [folder_sha256(root / "fixtures")]
    parts += [hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()]
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def origin_at(root: Path, commit: str, preregistration: Path, package: str = "listenkit") -> Origin:
    """The key inputs at ``commit`` of the suite at ``root`` (in a git checkout, maybe
    below its top): its pre-registration (``preregistration``, a path in the checkout),
    its suite code and its ``package`` (a folder under ``root``).

    Raises ``ValueError`` (with what to do) for an unknown commit, one that is not an
    ancestor of HEAD, or a path the commit does not have."""
    full = _git(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if not full:
        raise ValueError(f"--adopt-stages-from {commit}: no such commit in {root}")
    if subprocess.run(["git", "merge-base", "--is-ancestor", full, "HEAD"], cwd=root).returncode:
        raise ValueError(
            f"--adopt-stages-from {commit}: not an ancestor of HEAD; stages are adopted only "
            "from an earlier commit of this history"
        )
    top = Path(_git(root, "rev-parse", "--show-toplevel")).resolve()
    relative = preregistration.resolve().relative_to(top)  # paths inside the archive
    suite_root = root.resolve().relative_to(top)
    package_dir = (root / package).resolve().relative_to(top)
    with tempfile.TemporaryDirectory(prefix="listenkit-origin-") as tmp:
        tree = Path(tmp)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", full], cwd=root, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        old_prereg = tree / relative
        version = tree / package_dir / "_version.py"
        if not old_prereg.is_file() or not version.is_file():
            raise ValueError(
                f"--adopt-stages-from {commit}: the commit has no {relative} or "
                f"{package_dir / '_version.py'}"
            )
        salt = hashlib.sha256(old_prereg.read_bytes()).hexdigest()
        salt += suite_sha256(tree / suite_root, old_prereg.parent)
        code = code_sha256(tree / package_dir, _version(version))
    return Origin(commit=full, salt=salt, code_sha256=code)


def _version(path: Path) -> str:
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", path.read_text())
    if match is None:
        raise ValueError(f"{path}: no __version__ = '...' line")
    return match.group(1)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""
