"""Render report.html in headless Chromium and check the page actually paints (not blank)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from edgedistill.report import merge_reports, write_report

DATA = Path(__file__).parent / "data"
CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


def test_report_html_renders_in_chromium(tmp_path):
    comp = merge_reports([load("sample"), load("estimated"), load("jetson")])
    html = write_report(comp, tmp_path / "report")["html"]
    png = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,2000",
           html.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.exists(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    assert png.stat().st_size > 20_000
    img = Image.open(png).convert("RGB")
    assert img.size == (1280, 2000)
    gray = img.convert("L")
    assert ImageStat.Stat(gray).stddev[0] > 10  # a blank page has ~0
    # Colour from the plots and badges, not just black text on white.
    colours = img.resize((320, 500)).getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 100
    # The page's upper third holds headings and tables; its pixels must not all be white.
    top = gray.crop((0, 0, 1280, 700))
    assert sum(top.histogram()[:128]) > 2_000
