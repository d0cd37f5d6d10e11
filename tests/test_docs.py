"""The README and docs/ cannot go stale: every relative link resolves (file and #anchor),
every ```python block runs offline (in order, one namespace per page, from a scratch
directory) unless its first line is a ``# needs: ...`` comment (then it is compiled and
its imports are run), the CLI options are all documented, and the README stays short.

The ``# needs:`` reasons are listed at the top of docs/api.md."""

from __future__ import annotations

import ast
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LINKED = [*PAGES, ROOT / "CHANGELOG.md", ROOT / "results" / "README.md"]
NEEDS = ("whisper weights", "tts", "training", "your files")
README_MAX_LINES = 150

FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def split_fences(text: str) -> tuple[list[str], list[tuple[str, int, str]]]:
    """``(prose lines with fenced code blanked, [(info string, first line number, code)])``."""
    prose, blocks = [], []
    fence, info, start, body = None, "", 0, []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line.strip()) if fence is None else None
        if fence is None and match:
            fence, info, start, body = match.group(1), match.group(2).strip(), number + 1, []
            prose.append("")
        elif (
            fence is not None
            and line.strip().startswith(fence)
            and not line.strip().strip(fence[0])
        ):
            blocks.append((info, start, "\n".join(body) + "\n"))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    assert fence is None, f"an unclosed code fence (opened before line {start})"
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (markup dropped), lowercased, punctuation
    other than hyphens and underscores removed, spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, duplicates numbered as GitHub does."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    out |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", path.read_text(encoding="utf-8")))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """``(line, target)`` of every Markdown link outside code (inline code spans too)."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    out = []
    for number, line in enumerate(prose, 1):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            out.append((number, target))
    return out


def test_slug_follows_github():
    assert slug("Grounding coefficient (E2 / E5)") == "grounding-coefficient-e2--e5"
    assert slug("Screening heads by attribution patching (AtP, AtP*)") == (
        "screening-heads-by-attribution-patching-atp-atp"
    )
    assert slug("`listenkit sweep`") == "listenkit-sweep"
    assert slug("Pre-registration v1: E1 (2026-11-26)") == "pre-registration-v1-e1-2026-11-26"


@pytest.mark.parametrize("page", LINKED, ids=_rel)
def test_relative_links_resolve(page):
    broken = []
    for number, target in links(page):
        if re.match(r"^(https?:|mailto:)", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{_rel(page)}:{number}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{_rel(page)}:{number}: {target}: no heading #{anchor} in {dest.name}")
        elif anchor and dest.suffix != ".md":
            broken.append(f"{_rel(page)}:{number}: {target}: an anchor into a non-Markdown file")
    assert not broken, "\n".join(broken)


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, needs)`` of every ```python block; ``needs`` is the reason given by a
    first line ``# needs: ...`` (not run), else None."""
    _, blocks = split_fences(page.read_text(encoding="utf-8"))
    out = []
    for info, line, code in blocks:
        if info.split()[:1] != ["python"]:
            continue
        first = code.lstrip("\n").splitlines()[0] if code.strip() else ""
        match = re.fullmatch(r"#\s*needs:\s*(.+?)\s*", first)
        out.append((line, code, match.group(1) if match else None))
    return out


def _imports_only(code: str, filename: str) -> ast.Module:
    tree = ast.parse(code, filename)
    tree.body = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return tree


PYTHON_PAGES = [page for page in PAGES if python_blocks(page)]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_rel)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    """Blocks of one page share a namespace, in order; a ``# needs:`` block is compiled and
    only its imports run (a renamed name still fails)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for line, code, needs in python_blocks(page):
        where = f"{_rel(page)}:{line}"
        if needs is not None:
            assert needs in NEEDS, f"{where}: '# needs: {needs}' is not one of {NEEDS}"
            tree = _imports_only(code, where)
            exec(compile(tree, where, "exec"), {"__name__": "docs_imports"})
            continue
        try:
            exec(compile(code, where, "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"the code block at {where} failed: {err!r}") from err


def test_every_page_with_code_is_checked():
    """A page's blocks are found (a fence typo would silently skip them)."""
    readme_blocks = python_blocks(ROOT / "README.md")
    assert readme_blocks and all(needs is None for _, _, needs in readme_blocks)
    assert (ROOT / "docs" / "api.md") in PYTHON_PAGES


def test_the_needs_markers_are_documented():
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    head = api.split("\n## ", 1)[0]
    for reason in NEEDS:
        assert f"`# needs: {reason}`" in head, f"docs/api.md does not explain # needs: {reason}"


def test_every_cli_option_is_documented():
    import argparse

    from listenkit.report.cli import build_parser

    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = []
    for action in build_parser()._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for command, parser in action.choices.items():
            if f"### listenkit {command}" not in api:
                missing.append(f"listenkit {command}")
            section = api.split(f"### listenkit {command}", 1)[-1].split("\n## ", 1)[0]
            section = section.split("\n### ", 1)[0]
            for option in parser._actions:
                names = option.option_strings or [option.dest]
                if "--help" in names:
                    continue
                if not any(f"`{name}" in section for name in names):
                    missing.append(f"listenkit {command} {names[0]}")
    assert not missing, f"not documented in docs/api.md: {missing}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
