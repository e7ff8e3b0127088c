"""ONNX Runtime static INT8 (QDQ) with ViT-aware defaults: only MatMul/Gemm/Conv are quantized,
so LayerNorm, Softmax and GELU stay in float; weights are per-channel."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..config import QuantizeConfig
from ..errors import EdgedistillError
from .calibration import OrtCalibrationReader

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def quantize_ort_static(onnx_path: Path, out_path: Path, batch: np.ndarray, cfg: QuantizeConfig, input_name: str = "input", nodes_to_exclude: list[str] | None = None) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if cfg.method not in METHODS:
        raise EdgedistillError(f"unknown quantize.method '{cfg.method}'", f"use one of: {', '.join(METHODS)}")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out_path), OrtCalibrationReader(batch, input_name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(cfg.op_types),
            per_channel=cfg.per_channel,
            activation_type=QuantType.QInt8 if cfg.symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, METHODS[cfg.method]),
            nodes_to_exclude=nodes_to_exclude or [],
            extra_options={"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": True},
        )
    return out_path
