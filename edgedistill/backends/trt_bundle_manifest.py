"""A TensorRT bundle's bundle.json: its name, its format tag and how to read it with clear errors.

Apart from trt_bundle so that engine tagging (trt_tag) can read a bundle without importing the
bundle writer, which imports the engine builder, which imports trt_tag.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EdgedistillError

BUNDLE_DIR = "trt_bundle"
FORMAT = "edgedistill-tensorrt-bundle"


def load_bundle(bundle_dir: Path) -> dict:
    path = Path(bundle_dir) / "bundle.json"
    if not path.is_file():
        raise EdgedistillError(f"'{bundle_dir}' is not a TensorRT bundle (no bundle.json)", f"pass the {BUNDLE_DIR}/ folder that edgedistill build wrote")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise EdgedistillError(f"'{path}' is not valid JSON", "copy the bundle from the host again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EdgedistillError(f"'{path}' is not an edgedistill TensorRT bundle", f"pass the {BUNDLE_DIR}/ folder that edgedistill build wrote")
    return manifest
