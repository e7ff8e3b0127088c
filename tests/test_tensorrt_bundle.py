"""trt_bundle/: layout, bundle.json, scripts, atomic writes, and compile_bundle's checks before TensorRT."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from edgedistill.backends import trt_bundle
from edgedistill.backends.trt_bundle import compile_bundle, trtexec_command, write_bundle
from edgedistill.artifacts import sha256_file
from edgedistill.errors import EdgedistillError
from edgedistill.targets import load_target

from tests.test_tensorrt_models import IMG, export_tiny, quantize_qdq


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    fp = export_tiny(root / "model.onnx")
    return {"fp16": fp, "int8": quantize_qdq(fp, root / "model.int8.qdq.onnx")}


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calibration.npy"
    np.save(path, np.zeros((2, 3, IMG, IMG), dtype=np.float32))
    return path


def leftovers(out):
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_layout_and_manifest(tmp_path, onnx_files, calib):
    target = load_target("jetson-orin")
    bundle = write_bundle(tmp_path / "out", onnx_files, target, calibration_npy=calib)
    assert bundle == tmp_path / "out" / "trt_bundle"
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert files == ["README.md", "build_engines.sh", "bundle.json", "calibration/calibration.npy",
                     "onnx/fp16/model.onnx", "onnx/int8/model.int8.qdq.onnx"]
    assert (bundle / "engines").is_dir() and leftovers(tmp_path / "out") == []

    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["format"] == "edgedistill-tensorrt-bundle" and manifest["compiled"] is None
    assert manifest["expected"] == {"tensorrt": "10.3", "jetpack": "6.1"}
    assert manifest["precisions"] == ["fp16", "int8"]
    assert manifest["target"]["name"] == "jetson-orin" and "source" not in manifest["target"]
    assert manifest["target"]["backends"] == ["tensorrt"] and manifest["target"]["workspace_mb"] == 2048
    assert manifest["calibration"] == {"file": "calibration/calibration.npy", "sha256": sha256_file(calib)}
    fp16, int8 = manifest["models"]
    assert fp16["onnx"] == "onnx/fp16/model.onnx" and fp16["engine"] == "engines/fp16.engine"
    assert fp16["files"] == {"onnx/fp16/model.onnx": sha256_file(onnx_files["fp16"])}
    assert fp16["input"] == {"name": "input", "shape": [None, 3, IMG, IMG]}
    assert fp16["fp32_layers"] == ["/norm/LayerNormalization", "/Softmax"]
    assert fp16["findings"] == [] and int8["findings"] == []
    assert fp16["trtexec"] == trtexec_command("onnx/fp16/model.onnx", "engines/fp16.engine", "fp16", target, "input",
                                              [None, 3, IMG, IMG], fp32_layers=fp16["fp32_layers"], timing_cache="engines/timing.cache")
    assert int8["trtexec"][3:5] == ["--int8", "--fp16"]


def test_a_folder_named_trt_bundle_is_not_nested(tmp_path, onnx_files):
    assert write_bundle(tmp_path / "trt_bundle", onnx_files, load_target("jetson-orin")) == tmp_path / "trt_bundle"
    assert (tmp_path / "trt_bundle" / "bundle.json").is_file() and not (tmp_path / "trt_bundle" / "trt_bundle").exists()


def test_build_script_runs_the_recorded_commands(tmp_path, onnx_files):
    bundle = write_bundle(tmp_path, onnx_files, load_target("jetson-orin"))
    script = bundle / "build_engines.sh"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)  # valid shell
    for model in json.loads((bundle / "bundle.json").read_text())["models"]:
        assert '"$TRTEXEC" ' + shlex.join(model["trtexec"][1:]) in text.splitlines()
    assert "python3 -m edgedistill.backends.trt_tag engines/fp16.engine engines/int8.engine" in text
    assert "--verbose" not in text


def test_readme_says_what_remains(tmp_path, onnx_files):
    readme = (write_bundle(tmp_path, onnx_files, load_target("jetson-orin")) / "README.md").read_text()
    for needed in ("pip install edgedistill\n", "--system-site-packages", "edgedistill compile trt_bundle/", "build_engines.sh",
                   "TensorRT 10.3", "JetPack 6.1", "No problems found"):
        assert needed in readme
    assert "pip install 'edgedistill[tensorrt]'" not in readme  # its TensorRT 10 wheels would shadow JetPack's own TensorRT
    desktop = (write_bundle(tmp_path / "gpu", onnx_files, load_target("nvidia-gpu")) / "README.md").read_text()
    assert "pip install 'edgedistill[tensorrt]'" in desktop


def test_a_jetpack_5_readme_sends_the_user_to_trtexec_not_to_pip(tmp_path, onnx_files):
    # JetPack 5's Python is 3.8, which `pip install edgedistill` (Python >= 3.10) refuses
    readme = (write_bundle(tmp_path, {"fp16": onnx_files["fp16"]}, load_target("jetson-orin-jp5")) / "README.md").read_text()
    assert "pip install" not in readme and "edgedistill compile" not in readme
    assert "edgedistill cannot run on JetPack 5.1" in readme and "build_engines.sh" in readme


def test_blocking_findings_are_recorded_and_the_script_skips_them(tmp_path, onnx_files):
    bundle = write_bundle(tmp_path, {"int8": onnx_files["fp16"]}, load_target("jetson-orin"))
    (model,) = json.loads((bundle / "bundle.json").read_text())["models"]
    assert [f["code"] for f in model["findings"]] == ["int8-without-qdq"]
    script = (bundle / "build_engines.sh").read_text()
    assert "# skipped engines/int8.engine: int8 needs an explicitly quantized" in script
    assert not any(line.startswith('"$TRTEXEC"') for line in script.splitlines())
    run = subprocess.run(["bash", str(bundle / "build_engines.sh")], cwd=bundle, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "TRTEXEC": shutil.which("true")})
    assert run.returncode == 1 and "1 of 1 engine(s) were skipped" in run.stderr  # a device CI job must not pass without its engines
    assert "Errors block the build" in (bundle / "README.md").read_text()


def test_one_source_for_two_precisions_is_copied_once(tmp_path, onnx_files):
    bundle = write_bundle(tmp_path, {"fp16": onnx_files["fp16"], "best": onnx_files["fp16"]}, load_target("jetson-orin"))
    fp16, best = json.loads((bundle / "bundle.json").read_text())["models"]
    assert fp16["onnx"] == best["onnx"] == "onnx/fp16/model.onnx" and not (bundle / "onnx" / "best").exists()
    assert best["engine"] == "engines/best.engine"


def test_external_weights_travel_with_the_model(tmp_path, onnx_files):
    model = onnx.load(str(onnx_files["fp16"]))
    src = tmp_path / "src"
    src.mkdir()
    onnx.save(model, str(src / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    bundle = write_bundle(tmp_path / "out", {"fp16": src / "ext.onnx"}, load_target("jetson-orin"))
    (entry,) = json.loads((bundle / "bundle.json").read_text())["models"]
    assert set(entry["files"]) == {"onnx/fp16/ext.onnx", "onnx/fp16/ext.onnx.data"}
    onnx.checker.check_model(str(bundle / "onnx" / "fp16" / "ext.onnx"))  # loads the copied weights


def test_failed_write_leaves_no_half_bundle(tmp_path, onnx_files):
    out = tmp_path / "out"
    with pytest.raises(EdgedistillError, match="does not exist"):
        write_bundle(out, {"fp16": onnx_files["fp16"], "int8": tmp_path / "missing.onnx"}, load_target("jetson-orin"))
    assert not (out / "trt_bundle").exists() and leftovers(out) == []


def test_failed_rewrite_keeps_the_previous_bundle(tmp_path, onnx_files, monkeypatch):
    out = tmp_path / "out"
    bundle = write_bundle(out, {"fp16": onnx_files["fp16"]}, load_target("jetson-orin"))
    before = (bundle / "bundle.json").read_text()

    def broken_copy(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(trt_bundle.shutil, "copy2", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(out, onnx_files, load_target("jetson-orin"))
    assert (bundle / "bundle.json").read_text() == before and leftovers(out) == []


def test_bad_arguments(tmp_path, onnx_files):
    with pytest.raises(EdgedistillError, match="no ONNX files"):
        write_bundle(tmp_path, {}, load_target("jetson-orin"))
    with pytest.raises(EdgedistillError, match="unknown precision 'int4'"):
        write_bundle(tmp_path, {"int4": onnx_files["fp16"]}, load_target("jetson-orin"))
    with pytest.raises(EdgedistillError, match="calibration file"):
        write_bundle(tmp_path, onnx_files, load_target("jetson-orin"), calibration_npy=tmp_path / "none.npy")


def test_compile_without_tensorrt_names_the_extra(tmp_path, onnx_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # make `import tensorrt` fail even where it is installed
    bundle = write_bundle(tmp_path, onnx_files, load_target("jetson-orin"))
    with pytest.raises(EdgedistillError) as caught:
        compile_bundle(bundle)
    assert "edgedistill[tensorrt]" in caught.value.one_line() and "tensorrt" in caught.value.cause
    assert json.loads((bundle / "bundle.json").read_text())["compiled"] is None
    assert list((bundle / "engines").iterdir()) == []


def test_compile_stops_on_preflight_errors_before_tensorrt(tmp_path, onnx_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    bundle = write_bundle(tmp_path, {"int8": onnx_files["fp16"]}, load_target("jetson-orin"))
    with pytest.raises(EdgedistillError, match="int8 model: int8 needs an explicitly quantized"):
        compile_bundle(bundle)


def test_compile_rejects_a_changed_or_foreign_folder(tmp_path, onnx_files):
    bundle = write_bundle(tmp_path, onnx_files, load_target("jetson-orin"))
    with open(bundle / "onnx" / "fp16" / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(EdgedistillError, match="changed since the bundle was written"):
        compile_bundle(bundle)
    shutil.rmtree(bundle / "onnx")
    with pytest.raises(EdgedistillError, match="is missing"):
        compile_bundle(bundle)
    with pytest.raises(EdgedistillError, match="not a TensorRT bundle"):
        compile_bundle(tmp_path / "elsewhere")


def test_a_dla_bundle_says_which_engines_run_on_dla_and_tagging_records_their_core(tmp_path, onnx_files, monkeypatch):
    from edgedistill.backends import trt_tag

    target = load_target("jetson-orin-dla")
    bundle = write_bundle(tmp_path / "out", {"fp32": onnx_files["fp16"], "int8": onnx_files["int8"]}, target)
    fp32, int8 = json.loads((bundle / "bundle.json").read_text())["models"]
    assert (fp32["dla_core"], int8["dla_core"]) == (None, target.dla_core)
    readme = (bundle / "README.md").read_text()
    assert "GPU fallback for int8;" in readme and "the fp32 engine is built for the GPU alone" in readme
    for model in (fp32, int8):  # what build_engines.sh's trtexec lines would leave, then its tagging line
        (bundle / model["engine"]).write_bytes(b"engine")
    monkeypatch.setattr(trt_tag, "current_tag", lambda: {"tensorrt": "10.3.0.30", "device": "Orin", "compute_capability": "8.7"})
    assert trt_tag.main([str(bundle / fp32["engine"]), str(bundle / int8["engine"])]) == 0
    recorded = {m["precision"]: trt_tag.read_engine_tag(bundle / m["engine"])["build"] for m in (fp32, int8)}
    assert recorded == {"fp32": {"built_by": "trtexec", "precision": "fp32", "dla_core": None},
                        "int8": {"built_by": "trtexec", "precision": "int8", "dla_core": target.dla_core}}


def _build_with_quantized_inputs(tmp_path, onnx_files):
    """A build folder holding what compile reads for a TensorRT target: onnx-fp32, onnxruntime-int8, trt-calibration."""
    from edgedistill.artifacts import Artifact
    from edgedistill.quantize.trt_calibration import write_trt_calibration
    from edgedistill.quantize.calibration import CalibrationRecipe

    build = tmp_path / "build"
    (build / "quantized").mkdir(parents=True)
    shutil.copy(onnx_files["fp16"], build / "model.onnx")
    shutil.copy(onnx_files["int8"], build / "quantized" / "model.int8.qdq.onnx")
    dc = {"input_size": [3, IMG, IMG], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    write_trt_calibration(build / "quantized" / "trt_calibration", np.zeros((2, 3, IMG, IMG), np.float32), CalibrationRecipe(), dc)
    inputs = {
        "onnx": Artifact.record(build, build / "model.onnx", kind="onnx", name="onnx-fp32", precision="fp32", data_config=dc),
        "onnxruntime-int8": Artifact.record(build, build / "quantized" / "model.int8.qdq.onnx", kind="onnx", name="onnxruntime-int8",
                                            precision="int8", data_config=dc),
        "trt-calibration": Artifact.record(build, build / "quantized" / "trt_calibration", kind="calibration", name="trt-calibration",
                                           data_config=dc),
    }
    return build, inputs


def _manifest(build, records):
    from edgedistill.artifacts import Manifest

    manifest = Manifest(build)
    for record in records:
        manifest.add(record)
    return manifest


def test_the_bundle_record_names_every_artifact_it_holds_a_copy_of(tmp_path, onnx_files, monkeypatch):
    from edgedistill.artifacts import sha256_file
    from edgedistill.backends import compile_stage
    from edgedistill.targets import TargetProfile

    monkeypatch.setattr(TargetProfile, "runs_on_this_host", lambda self: (False, "not the device"))
    build, inputs = _build_with_quantized_inputs(tmp_path, onnx_files)
    target = load_target("jetson-orin")
    (bundle,) = compile_stage._tensorrt(inputs, build, target)
    assert bundle.parents == ["onnx-fp32", "onnxruntime-int8", "trt-calibration"]
    assert bundle.config_hash == target.content_hash() != ""  # the profile its build commands carry
    parent_files = {sha256_file(f) for a in inputs.values() for f in [a.abspath(build), *a.abspath(build).rglob("*")] if f.is_file()}
    copies = [f for f in bundle.abspath(build).rglob("*") if f.suffix in (".onnx", ".npy")]
    assert len(copies) == 3 and all(sha256_file(f) in parent_files for f in copies)

    # an int8-only bundle holds no fp32 model: engines adopted later keep the parents it recorded
    int8_only = dataclasses.replace(target, precisions=("int8",))
    (bundle,) = compile_stage._tensorrt(inputs, build, int8_only)
    assert bundle.parents == ["onnxruntime-int8", "trt-calibration"]
    manifest = _manifest(build, [*inputs.values(), bundle])
    (build / "trt_bundle" / "engines" / "int8.engine").write_bytes(b"what trtexec wrote")
    assert compile_stage.adopt_engines(manifest) == ["tensorrt-bundle", "tensorrt-int8"]
    found = manifest.artifacts()
    assert found["tensorrt-bundle"].parents == ["onnxruntime-int8", "trt-calibration"]
    assert found["tensorrt-int8"].data_config == inputs["onnx"].data_config
    assert found["tensorrt-int8"].config_hash == int8_only.content_hash()


def test_engines_join_a_manifest_written_when_the_bundle_named_only_onnx_fp32(tmp_path, onnx_files, monkeypatch):
    from edgedistill.backends import compile_stage
    from edgedistill.targets import TargetProfile

    monkeypatch.setattr(TargetProfile, "runs_on_this_host", lambda self: (False, "not the device"))
    build, inputs = _build_with_quantized_inputs(tmp_path, onnx_files)
    (bundle,) = compile_stage._tensorrt(inputs, build, load_target("jetson-orin"))
    old = dataclasses.replace(bundle, parents=["onnx-fp32"], config_hash="")  # as versions before wrote it
    manifest = _manifest(build, [*inputs.values(), old])
    for precision in ("fp16", "int8"):
        (build / "trt_bundle" / "engines" / f"{precision}.engine").write_bytes(b"engine")
    assert compile_stage.adopt_engines(manifest) == ["tensorrt-bundle", "tensorrt-fp16", "tensorrt-int8"]
    found = manifest.artifacts()
    assert found["tensorrt-bundle"].parents == ["onnx-fp32"] and found["tensorrt-bundle"].status == "ready"
    assert found["tensorrt-fp16"].data_config == inputs["onnx"].data_config and manifest.changed_artifacts() == []


@pytest.mark.parametrize("content, cause", [
    ("[1, 2]", "is not an edgedistill TensorRT bundle"),  # a JSON list was an AttributeError traceback
    ("{not json", "is not valid JSON"),
    ('{"format": "other"}', "is not an edgedistill TensorRT bundle"),
])
def test_a_bundle_json_that_is_not_ours_is_a_one_line_error(tmp_path, content, cause):
    from edgedistill.backends.trt_bundle_manifest import load_bundle

    (tmp_path / "bundle.json").write_text(content)
    with pytest.raises(EdgedistillError, match=cause):
        load_bundle(tmp_path)
