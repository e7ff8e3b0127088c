"""Stage `compile`: per-target engines. OpenVINO IR here; TensorRT engines on a host that has
TensorRT, otherwise a bundle that `edgedistill compile BUNDLE` finishes on the device."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import Artifact, atomic_output
from ..config import BuildConfig
from ..targets import TargetProfile
from .openvino_backend import convert_to_ir
from .registry import get_backend


def run(cfg: BuildConfig, inputs: dict, workdir: Path, target: TargetProfile) -> list[Artifact]:
    onnx_fp32: Artifact = inputs["onnx"]
    produced = []
    if "openvino" in target.backends:
        for precision in [p for p in ("fp32", "fp16") if p in target.precisions]:
            final = workdir / "openvino" / precision
            with atomic_output(final) as tmp:
                convert_to_ir(onnx_fp32.abspath(workdir), tmp / "model.xml", fp16_weights=precision == "fp16")
            produced.append(Artifact.record(
                workdir, final, kind="openvino-ir", name=f"openvino-{precision}", parents=[onnx_fp32.name], precision=precision,
                backend="openvino", device=target.device, data_config=onnx_fp32.data_config,
            ))
    if "tensorrt" in target.backends:
        produced += _tensorrt(inputs, workdir, target)
    return produced


def _tensorrt(inputs: dict, workdir: Path, target: TargetProfile) -> list[Artifact]:
    from .trt_bundle import write_bundle

    onnx_files = {}
    for precision in target.precisions:
        source = inputs.get("onnxruntime-int8") if precision == "int8" else inputs["onnx"]
        if source is not None:
            onnx_files[precision] = source.abspath(workdir)
    calibration = inputs.get("trt-calibration")  # the exact batch the QDQ graph was calibrated on
    calibration_npy = calibration.abspath(workdir) / "calibration.npy" if calibration is not None else None
    bundle = write_bundle(workdir / "trt_bundle", onnx_files, target, calibration_npy)
    records = [Artifact.record(workdir, bundle, kind="trt-bundle", name="tensorrt-bundle", parents=[inputs["onnx"].name],
                               backend="tensorrt", device=target.device, status="pending", data_config=inputs["onnx"].data_config,
                               extra={"precisions": sorted(onnx_files)})]
    if get_backend("tensorrt").is_available():
        from .trt_bundle import compile_bundle

        for engine in compile_bundle(bundle):
            records.append(Artifact.record(workdir, engine, kind="trt-engine", name=f"tensorrt-{engine.stem.split('.')[-1]}",
                                           parents=["tensorrt-bundle"], backend="tensorrt", device=target.device,
                                           precision=engine.stem.split(".")[-1], data_config=inputs["onnx"].data_config))
    return records
