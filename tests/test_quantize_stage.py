"""The quantize stage's records: which layers stayed float is visible in the artifact, in the ONNX
metadata and on the console; a TensorRT target also gets the calibration batch for its calibrator."""

from __future__ import annotations

import json

import onnx
import pytest

from edgedistill.artifacts import Artifact
from edgedistill.config import BuildConfig, QuantizeConfig
from edgedistill.export.onnx_export import export_onnx
from edgedistill.quantize import stage
from edgedistill.quantize.trt_calibration import read_trt_calibration
from edgedistill.targets import TargetProfile
from tests.small_cnn import small_cnn

DC = {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 1.0, "crop_mode": "center"}


@pytest.fixture()
def onnx_artifact(tmp_path):
    model = small_cnn()
    export_onnx(model, DC["input_size"], tmp_path / "model.onnx", ["logits"])
    return Artifact.record(tmp_path, tmp_path / "model.onnx", kind="onnx", name="onnx-fp32", precision="fp32", backend="onnxruntime", data_config=DC)


def _cfg(**quantize) -> BuildConfig:
    return BuildConfig(quantize=QuantizeConfig(calibration="bundled-photos", holdout_images=16, sensitivity_samples=4, **quantize))


def test_fallback_layers_are_recorded_everywhere(tmp_path, onnx_artifact, capfd):
    # An unreachable cosine budget (INT8 layers never give exactly 1): the fallback runs to its limits and says so.
    target = TargetProfile(name="strict", backends=("onnxruntime",), min_cosine=1.0, min_top1_agreement=1.0)
    (artifact,) = stage.run(_cfg(fallback_max_trials=3), {"onnx": onnx_artifact}, tmp_path, target)
    fallback = artifact.extra["fallback"]
    assert artifact.name == "onnxruntime-int8" and artifact.kind == "onnx" and artifact.precision == "int8"
    assert artifact.extra["float_layers"] == fallback["float_layers"] and fallback["float_layers"]
    assert 1 <= len(fallback["trials"]) <= 3 and fallback["within_budget"] is False  # 4 layers, at most half float
    assert fallback["final"]["cosine"] >= fallback["plain_int8"]["cosine"]
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / artifact.path)).metadata_props}
    assert json.loads(meta["edgedistill.float_layers"]) == fallback["float_layers"] and meta["edgedistill.precision"] == "int8"
    err = " ".join(capfd.readouterr().err.split())
    assert "STILL BELOW BUDGET" in err and fallback["float_layers"][0] in err


def test_within_budget_keeps_every_layer_int8_and_trt_gets_the_batch(tmp_path, onnx_artifact):
    target = TargetProfile(name="loose", backends=("tensorrt",), device="GPU", min_cosine=0.5, min_top1_agreement=0.0)
    produced = {a.name: a for a in stage.run(_cfg(), {"onnx": onnx_artifact}, tmp_path, target)}
    int8 = produced["onnxruntime-int8"]
    # Only the output head (the Linear writing `logits`) stays float; TensorRT wants s8 activations.
    assert int8.extra["float_layers"] == int8.extra["fallback"]["output_layers"] == ["/8/Gemm"]
    assert int8.extra["symmetric_activations"] is True and int8.extra["fallback"]["trials"] == []
    from edgedistill.backends.trt_onnx import non_int8_dequantize

    assert non_int8_dequantize(onnx.load(str(tmp_path / int8.path))) == 0  # float biases: TensorRT parses no int32 DequantizeLinear
    batch, info = read_trt_calibration(tmp_path / produced["trt-calibration"].path)
    assert batch.shape == (64, 3, 32, 32) and info["recipe"]["samples"] == 64


def test_openvino_int8_ir_says_int8_in_its_metadata(tmp_path, onnx_artifact):
    import openvino as ov

    target = TargetProfile(name="ov", backends=("openvino",), min_cosine=0.5, min_top1_agreement=0.0)
    (artifact,) = stage.run(_cfg(), {"onnx": onnx_artifact}, tmp_path, target)
    model = ov.Core().read_model(str(tmp_path / artifact.path / "model.xml"))
    assert model.get_rt_info(["framework", "edgedistill.precision"]).astype(str) == "int8"  # it inherited fp32
    assert json.loads(model.get_rt_info(["framework", "edgedistill.calibration"]).astype(str))["samples"] == 64


def test_the_calibration_record_says_when_held_out_views_share_calibration_images(tmp_path, onnx_artifact):
    target = TargetProfile(name="loose", backends=("onnxruntime",), min_cosine=0.5, min_top1_agreement=0.0)
    (artifact,) = stage.run(_cfg(), {"onnx": onnx_artifact}, tmp_path, target)
    assert artifact.extra["calibration"]["holdout_shares_calibration_images"] is True  # 12 bundled photos, 64 samples


def test_the_trt_calibration_record_hashes_its_recipe(tmp_path, onnx_artifact):
    from dataclasses import replace

    from edgedistill.quantize.calibration import load_recipe

    target = TargetProfile(name="loose", backends=("tensorrt",), device="GPU", min_cosine=0.5, min_top1_agreement=0.0)
    recipe = tmp_path / "eight.yaml"
    recipe.write_text("source: bundled\nsamples: 8\nseed: 7\n")
    cfg = replace(_cfg(), quantize=replace(_cfg().quantize, calibration=str(recipe)))
    produced = {a.name: a for a in stage.run(cfg, {"onnx": onnx_artifact}, tmp_path, target)}
    assert produced["trt-calibration"].config_hash == stage.recipe_hash(load_recipe(str(recipe))) != ""
    assert stage.recipe_hash(load_recipe("bundled-photos")) != produced["trt-calibration"].config_hash  # another recipe, another batch
