"""A wheel built with `pip wheel .` (not an editable install) finds the bundled profiles."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_targets_and_calibration(tmp_path):
    # Build from a copy so setuptools' build/ folder never lands in (or goes stale in) the checkout.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info", "__pycache__", ".cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)], check=True)
    wheel = next(tmp_path.glob("edgedistill-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "edgedistill/profiles/targets/x86-cpu.yaml" in names
    assert "edgedistill/profiles/targets/jetson-orin.yaml" in names
    assert "edgedistill/profiles/calibration/bundled-photos.yaml" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    code = "import edgedistill, edgedistill.targets as t; assert edgedistill.__file__.startswith(%r), edgedistill.__file__; print(t.load_target('jetson-orin').source)" % str(site)
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(site))
