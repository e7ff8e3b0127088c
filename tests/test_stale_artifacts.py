"""A re-run stage that no longer makes an artifact (the build switched target) removes that artifact's files:
no record describes them, yet they would go to the device with the folder."""

from pathlib import Path

import pytest

from edgedistill.artifacts import Artifact
from edgedistill.config import load_config
from edgedistill.pipeline import Pipeline
from edgedistill.targets import load_target


def made(root: Path, rel: str, name: str) -> Artifact:
    path = root / rel
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / "model.xml").write_text(name)
    return Artifact.record(root, path, kind="onnx" if path.suffix else "openvino-ir", name=name)


@pytest.fixture
def pipe(tmp_path) -> Pipeline:
    return Pipeline(load_config(), load_target("x86-cpu"), tmp_path / "build")


def test_outputs_a_rerun_stage_no_longer_makes_are_removed(pipe):
    root = pipe.workdir
    pipe._run_stage("quantize", "x86", lambda: [made(root, "quantized/model.int8.onnx", "onnxruntime-int8"), made(root, "openvino/int8", "openvino-int8")])
    pipe._run_stage("compile", "x86", lambda: [made(root, "openvino/fp32", "openvino-fp32")])

    with pytest.raises(RuntimeError):  # a failed run removes nothing: its records are kept aside with their files
        pipe._run_stage("quantize", "typo", lambda: (_ for _ in ()).throw(RuntimeError("bad recipe")))
    assert (root / "openvino" / "int8" / "model.xml").is_file() and (root / "openvino" / "fp32").is_dir()

    # another target: no OpenVINO backend
    pipe._run_stage("quantize", "arm64", lambda: [made(root, "quantized/model.int8.onnx", "onnxruntime-int8")])
    assert not (root / "openvino" / "int8").exists() and (root / "quantized" / "model.int8.onnx").is_file()
    assert (root / "openvino" / "fp32").is_dir()  # compile's, until compile runs for the new target
    pipe._run_stage("compile", "arm64", lambda: [])
    assert not (root / "openvino").exists()
    assert set(pipe.artifacts()) == {"onnxruntime-int8"} and (root / "manifest.json").is_file()


def test_only_paths_inside_the_build_folder_and_outside_recorded_artifacts_are_removed(pipe, tmp_path):
    root = pipe.workdir
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("mine")
    (outside / "sub" / "keep.txt").write_text("mine")
    (root / "link").symlink_to(outside, target_is_directory=True)
    pipe._run_stage("quantize", "x86", lambda: [made(root, "quantized/model.int8.onnx", "onnxruntime-int8"), made(root, "openvino/int8", "openvino-int8")])
    # a hand-edited manifest: old records naming files outside the build folder, through a link, or a recorded artifact
    records = pipe.manifest.data["artifacts"]
    for name, path in (("escape", "../outside"), ("through-link", "link/sub"), ("link", "link"), ("holder", "quantized"),
                       ("inside-kept", "quantized/model.int8.onnx/x"), ("root", ".")):
        records[name] = {**records["openvino-int8"], "name": name, "path": path}
    pipe.manifest.data["stages"]["quantize"]["outputs"] += ["escape", "through-link", "link", "holder", "inside-kept", "root"]
    pipe.manifest.save()

    pipe._run_stage("quantize", "arm64", lambda: [made(root, "quantized/model.int8.onnx", "onnxruntime-int8")])
    assert not (root / "openvino").exists()
    assert (outside / "keep.txt").read_text() == "mine" and (outside / "sub" / "keep.txt").read_text() == "mine"
    assert not (root / "link").is_symlink()  # the link itself was the old output: removed, not what it points to
    assert (root / "quantized" / "model.int8.onnx").read_text() == "onnxruntime-int8" and (root / "manifest.json").is_file()
