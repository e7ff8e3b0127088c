"""metadata_props of a quantized ONNX file: the exporter's facts stay, precision and fallback are updated."""

from __future__ import annotations

import json
from pathlib import Path


def update_metadata(path: Path, values: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        entry = existing.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, text
    onnx.save(model, str(path))
