"""Artifact records whose output depends on settings carry a config hash of those settings (DESIGN.md's
record contract): OpenVINO IRs and the evaluation set here; the TensorRT bundle and the calibration batch
in test_tensorrt_bundle.py and test_quantize_stage.py."""

from __future__ import annotations

import dataclasses
import shutil

from edgedistill.artifacts import Artifact
from edgedistill.backends import compile_stage
from edgedistill.config import load_config
from edgedistill.targets import load_target

from tests.test_bench_fixtures import embedder

PROFILE = "name: ov-box\narch: x86_64\ndevice: CPU\nbackends: [openvino]\nprecisions: [fp32, fp16]\nworkspace_mb: 512\n"


def test_openvino_irs_record_the_hash_of_the_target_profile_they_were_compiled_for(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    embedder(build / "model.onnx")
    onnx = Artifact.record(build, build / "model.onnx", kind="onnx", name="onnx-fp32", precision="fp32", backend="onnxruntime")
    (tmp_path / "ov-box.yaml").write_text(PROFILE)
    target = load_target(str(tmp_path / "ov-box.yaml"))
    records = compile_stage.run(load_config(), {"onnx": onnx}, build, target)
    assert [(r.name, r.config_hash) for r in records] == [("openvino-fp32", target.content_hash()), ("openvino-fp16", target.content_hash())]
    assert target.content_hash() != ""
    # the profile's content, not where it was loaded from (a build folder copied to a device and back)
    shutil.copy(tmp_path / "ov-box.yaml", build / "target.yaml")
    assert load_target(str(build / "target.yaml")).content_hash() == target.content_hash()
    assert dataclasses.replace(target, precisions=("fp16",)).content_hash() != target.content_hash()


def test_the_evalset_record_hashes_the_settings_it_was_made_from(tmp_path):
    from edgedistill.export.evalset import evalset_hash, write_evalset

    teacher = ["teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=32", "teacher.model_args={depth: 1}"]
    cfg = load_config(None, [*teacher, "bench.eval_images=4"])
    student = {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": (0, 0, 0), "std": (1, 1, 1), "crop_pct": 1.0}
    record = write_evalset(cfg, student, tmp_path, "onnx-fp32")
    assert record.config_hash == evalset_hash(cfg) != ""
    assert evalset_hash(load_config(None, [*teacher, "bench.eval_images=8"])) != record.config_hash  # other images
    assert evalset_hash(load_config(None, [*teacher[:-1], "teacher.model_args={depth: 2}", "bench.eval_images=4"])) != record.config_hash
    # neither how distillation runs the teacher nor a bench setting the evalset does not read
    assert evalset_hash(load_config(None, [*teacher, "bench.eval_images=4", "teacher.dtype=bf16", "bench.iterations=7"])) == record.config_hash
