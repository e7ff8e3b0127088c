"""The calibration batch written beside a TensorRT bundle, so anyone can check, or redo, the INT8
scales on exactly the samples ONNX Runtime and NNCF saw.

calibration.npy holds the float32 NCHW batch (already preprocessed with the student's data
config); calibration.json says its shape, input name, the recipe and a hash. TensorRT itself
builds INT8 engines from the QDQ model, whose Q/DQ nodes carry the scales (explicit
quantization); edgedistill runs no TensorRT calibrator, since TensorRT 10 deprecated implicit
INT8 calibration and TensorRT 11 removed it. A calibrator written against TensorRT 10 may read
this batch; it must then only accept a cache whose `batch_sha256` and TensorRT version match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..artifacts import atomic_output
from .calibration import CalibrationRecipe

CALIBRATION_NPY = "calibration.npy"
CALIBRATION_JSON = "calibration.json"


def batch_sha256(batch: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(batch, dtype=np.float32).tobytes()).hexdigest()


def write_trt_calibration(folder: Path, batch: np.ndarray, recipe: CalibrationRecipe, data_config: dict, input_name: str = "input") -> Path:
    """Write calibration.npy + calibration.json into `folder` atomically; returns the folder."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    with atomic_output(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        np.save(tmp / CALIBRATION_NPY, batch)
        (tmp / CALIBRATION_JSON).write_text(json.dumps({
            "schema": "edgedistill.calibration/1", "input_name": input_name, "dtype": "float32", "layout": "NCHW",
            "shape": list(batch.shape), "batch_sha256": batch_sha256(batch), "recipe": recipe.__dict__, "data_config": data_config,
        }, indent=2) + "\n")
    return Path(folder)


def read_trt_calibration(folder: Path) -> tuple[np.ndarray, dict]:
    """(batch, description) as written by write_trt_calibration; the hash is checked."""
    info = json.loads((Path(folder) / CALIBRATION_JSON).read_text())
    batch = np.load(Path(folder) / CALIBRATION_NPY)
    if list(batch.shape) != info["shape"] or batch_sha256(batch) != info["batch_sha256"]:
        raise ValueError(f"{folder}: calibration.npy does not match calibration.json (shape or hash)")
    return batch, info
