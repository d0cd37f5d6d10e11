"""The published index, opened in headless Chromium, shows the scorecard on its first
screen (1280 x 800), and a screenshot of it is kept in reports/ to look at.

Needs Chromium (`apt-get install chromium`; CI installs it); skipped without it, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = sorted(p for p in (ROOT / "results").glob("*-full") if (p / "index.html").is_file())
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,800"]  # fmt: skip
PROBE = """<script>window.addEventListener('load', () => {
  const card = document.getElementById('scorecard').getBoundingClientRect();
  document.body.setAttribute('data-scorecard', card.top + ',' + card.height + ',' +
                             window.innerHeight);
});</script>"""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium for the page check: apt-get install chromium"
)


def _chromium(*args: str, tmp: Path) -> str:
    profile = tmp / "profile"
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize("folder", PUBLISHED[-1:], ids=[p.name for p in PUBLISHED[-1:]])
def test_the_first_screen_of_the_published_index_is_the_scorecard(folder, tmp_path):
    page = tmp_path / "index.html"
    page.write_text((folder / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri(), tmp=tmp_path)
    found = re.search(r'data-scorecard="([\d.]+),([\d.]+),([\d.]+)"', dom)
    assert found, "the scorecard section did not render"
    top, height, screen = (float(x) for x in found.groups())
    assert top < 0.5 * screen, f"the scorecard starts at {top:.0f} px of a {screen:.0f} px screen"
    assert height > 100, "the scorecard is empty"
    shot = ROOT / "reports" / f"index-first-screen-{folder.name}.png"
    shot.parent.mkdir(exist_ok=True)
    _chromium(f"--screenshot={shot}", (folder / "index.html").as_uri(), tmp=tmp_path)
    assert shot.stat().st_size > 10_000
