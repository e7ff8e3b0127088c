"""ONNX Runtime static INT8 (QDQ) with ViT-aware defaults: only MatMul/Gemm/Conv are quantized,
so LayerNorm, Softmax and GELU stay in float; weights are per-channel."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from ..config import QuantizeConfig
from ..errors import EdgedistillError
from .calibration import OrtCalibrationReader
from .scratch import scratch_dir

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# quantize_static builds its EntropyCalibrater with 128 histogram bins and 128 quantized bins and takes no bin
# options: the KL search then has one candidate, the full range, and Entropy gives MinMax's ranges. 2048 bins
# into 128 (TensorRT's entropy calibrator uses the same) leave it 961 clipping thresholds to choose from.
ENTROPY_BINS = {"num_bins": 2048, "num_quantized_bins": 128}
# No Q/DQ on MatMul outputs. On the attention scores (q @ k) it sits before Softmax, and with the Q/DQ the next
# MatMul puts on Softmax's output onnxruntime fuses them into QLinearSoftmax, whose CPU kernel in 1.18-1.31 goes
# wrong for small output scales, which calibrated attention weights get (17 tokens: all zeros below about 1/3000):
# a distilled ViT-Tiny's embedding cosine was 0.906 on 1.23.2, 0.99997 on 1.32 (benchmarks/qlinear_softmax.py checks
# an onnxruntime's kernel). Without them MatMuls run as
# MatMulIntegerToFloat, on 1.32 too closer to fp32 and faster (random-init ViT-Tiny at 224: cosine 0.99908 -> 0.99947, 18.5 -> 13.9 ms)
NO_OUTPUT_QDQ = ["MatMul"]
def prepare(onnx_path: Path, out_path: Path) -> Path:
    """ORT's pre-processing (shape inference, graph cleanup) that static quantization expects."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(onnx_path), str(out_path), skip_symbolic_shape=True)
    return out_path


def loads_saved_ranges() -> bool:
    """quantize_static takes a calibration cache (calibration_cache_path) from onnxruntime 1.27 on; before, every
    call calibrates again."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def entropy_ranges(model: Path, reader: OrtCalibrationReader, op_types: list[str], cache: Path, tmp: Path) -> Path:
    """ORT's Entropy calibration with ENTROPY_BINS, saved as a calibration cache for quantize_static to load,
    or before onnxruntime 1.27 as {tensor: [low, high]} for range_overrides."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    calibrator = create_calibrator(model, op_types, augmented_model_path=str(tmp / "entropy-augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy, extra_options=dict(ENTROPY_BINS))
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    if loads_saved_ranges():
        from onnxruntime.quantization.calibrate import save_tensors_data

        save_tensors_data(ranges, cache)
    else:
        Path(cache).write_text(json.dumps({name: [float(v) for v in ranges[name].range_value] for name in ranges}))
    return cache


def range_overrides(cache: Path) -> dict:
    """entropy_ranges' {tensor: [low, high]} as TensorQuantOverrides, which every quantize_static since 1.18 applies
    over its own calibration's ranges (numpy scalars: its scale computation reads their dtype)."""
    return {name: [{"rmin": np.float32(low), "rmax": np.float32(high)}] for name, (low, high) in json.loads(Path(cache).read_text()).items()}


def quantize_ort_static(onnx_path: Path, out_path: Path, batch: np.ndarray | None, cfg: QuantizeConfig, input_name: str = "input",
                        nodes_to_exclude: list[str] | None = None, ranges_cache: Path | None = None, prepared: bool = False) -> Path:
    """Quantize `onnx_path` to a QDQ model. With `ranges_cache` the calibration ranges are computed
    once and reused (ORT's calibration_cache_path), so re-quantizing with other excluded nodes is cheap.
    Before onnxruntime 1.27 quantize_static calibrates on every call: MinMax and Percentile give the same
    ranges again from the same batch (slower, same model), Entropy's come from `ranges_cache` as overrides."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if cfg.method not in METHODS:
        raise EdgedistillError(f"unknown quantize.method '{cfg.method}'", f"use one of: {', '.join(METHODS)}")
    options = {"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": True, "QuantizeBias": cfg.quantize_bias,
               "OpTypesToExcludeOutputQuantization": NO_OUTPUT_QDQ}
    method, cache_kwargs = cfg.method, {}
    with scratch_dir(out_path) as tmp:
        source = Path(onnx_path) if prepared else prepare(onnx_path, Path(tmp) / "prepared.onnx")
        reader = OrtCalibrationReader(batch, input_name) if batch is not None else None
        if cfg.method == "entropy" and reader is not None and not (ranges_cache is not None and Path(ranges_cache).is_file()):
            ranges_cache = entropy_ranges(source, reader, list(cfg.op_types), Path(ranges_cache or Path(tmp) / "ranges.json"), Path(tmp))
            reader.rewind()  # read to the end: quantize_static before 1.27 calibrates with it again
        if loads_saved_ranges():
            cache_kwargs["calibration_cache_path"] = str(ranges_cache) if ranges_cache is not None else None
        elif cfg.method == "entropy":
            # every range replaced by entropy_ranges': the MinMax pass quantize_static insists on is the cheapest
            options["TensorQuantOverrides"], method = range_overrides(ranges_cache), "minmax"
        quantize_static(
            str(source), str(out_path), reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(cfg.op_types),
            per_channel=cfg.per_channel,
            activation_type=QuantType.QInt8 if cfg.symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            nodes_to_exclude=list(nodes_to_exclude or []),
            extra_options=options,
            **cache_kwargs,
        )
    return out_path
