"""OpenVINO INT8 through NNCF post-training quantization, with the transformer-aware scheme."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingBackendError


def quantize_nncf(onnx_path: Path, xml_path: Path, batch: np.ndarray, transformer: bool = True) -> Path:
    """model_type=TRANSFORMER keeps LayerNorm/Softmax/GELU in float and uses SmoothQuant-aware
    placement; without it NNCF also quantizes ops that ViTs are sensitive to."""
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise MissingBackendError("nncf", None, "OpenVINO INT8 quantization") from exc
    from .calibration import nncf_dataset

    model = ov.Core().read_model(str(onnx_path))
    quantized = nncf.quantize(
        model, nncf_dataset(batch), subset_size=len(batch),
        model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        preset=nncf.QuantizationPreset.MIXED,
    )
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    return xml_path
