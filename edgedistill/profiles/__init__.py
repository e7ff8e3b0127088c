"""Bundled YAML profiles: target devices (targets/) and calibration recipes (calibration/).

In a wheel they are the subpackages edgedistill.profiles.targets / .calibration; in a source
checkout they are the top-level folders, which setup.py maps onto those names.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def bundled_dir(kind: str) -> Path:
    """Folder holding the bundled '*.yaml' files of `kind` ('targets' or 'calibration')."""
    try:
        found = Path(str(importlib.resources.files(f"edgedistill.profiles.{kind}")))
        if found.is_dir() and any(found.glob("*.yaml")):
            return found
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / kind


def bundled_names(kind: str) -> list[str]:
    return sorted(p.stem for p in bundled_dir(kind).glob("*.yaml"))
