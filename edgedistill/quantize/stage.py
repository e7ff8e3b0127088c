"""Stage `quantize`: model.onnx -> INT8 models for the target's backends, from calibration data."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import Artifact, atomic_output
from ..config import BuildConfig
from ..targets import TargetProfile
from .calibration import calibration_batch, load_recipe
from .nncf_ov import quantize_nncf
from .ort_static import quantize_ort_static


def calibration_for(cfg: BuildConfig, target: TargetProfile, data_config: dict, workdir: Path):
    # An explicit --set quantize.calibration wins over the target's default recipe.
    name = cfg.quantize.calibration if cfg.quantize.calibration != "bundled-photos" else target.calibration
    recipe = load_recipe(name)
    return recipe, calibration_batch(recipe, data_config, workdir / ".cache")


def run(cfg: BuildConfig, inputs: dict, workdir: Path, target: TargetProfile) -> list[Artifact]:
    onnx_artifact: Artifact = inputs["onnx"]
    if "int8" not in target.precisions:
        return []
    recipe, batch = calibration_for(cfg, target, onnx_artifact.data_config, workdir)
    common = dict(parents=[onnx_artifact.name], precision="int8", data_config=onnx_artifact.data_config,
                  config_hash=cfg.section_hash("quantize"), extra={"calibration": {**recipe.__dict__, "method": cfg.quantize.method}})
    produced = []
    if {"onnxruntime", "tensorrt"} & set(target.backends):
        # TensorRT only accepts symmetric (signed) activation Q/DQ.
        qcfg = cfg.quantize
        if "tensorrt" in target.backends and not qcfg.symmetric_activations:
            from dataclasses import replace

            qcfg = replace(qcfg, symmetric_activations=True)
        final = workdir / "quantized" / "model.int8.qdq.onnx"
        with atomic_output(final) as tmp:
            quantize_ort_static(onnx_artifact.abspath(workdir), tmp, batch, qcfg)
        produced.append(Artifact.record(workdir, final, kind="onnx", name="onnxruntime-int8", backend="onnxruntime",
                                        **{**common, "extra": {**common["extra"], "symmetric_activations": qcfg.symmetric_activations, "op_types": list(qcfg.op_types)}}))
    if "openvino" in target.backends:
        final = workdir / "openvino" / "int8"
        with atomic_output(final) as tmp:
            quantize_nncf(onnx_artifact.abspath(workdir), tmp / "model.xml", batch)
        produced.append(Artifact.record(workdir, final, kind="openvino-ir", name="openvino-int8", backend="openvino", device=target.device, **common))
    return produced
