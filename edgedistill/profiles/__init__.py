"""Bundled YAML profiles: target devices (targets/) and calibration recipes (calibration/).

In a wheel they sit beside this file as edgedistill/profiles/{targets,calibration}/; in a
source checkout (or an editable install) they are the repository's top-level folders, which
setup.py maps onto those package names.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def bundled_dir(kind: str) -> Path:
    """Folder holding the bundled '*.yaml' files of `kind` ('targets' or 'calibration')."""
    installed = _HERE / kind
    return installed if installed.is_dir() else _HERE.parents[1] / kind


def bundled_names(kind: str) -> list[str]:
    return sorted(p.stem for p in bundled_dir(kind).glob("*.yaml"))
