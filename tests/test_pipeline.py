"""The whole pipeline on a tiny student, through the CLI, with real ONNX Runtime and OpenVINO runs."""

import json
from pathlib import Path

import pytest
import timm
import torch

from edgedistill.artifacts import Artifact, Manifest
from edgedistill.cli import main
from edgedistill.export.onnx_export import read_metadata
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.models.student import load_student

EXPECTED = {"student", "onnx-fp32", "evalset", "onnxruntime-int8", "openvino-int8", "openvino-fp32", "bench"}


def test_build_folder_is_complete(tiny_build):
    manifest = Manifest.load(tiny_build)
    assert manifest.data["status"] == "complete"
    assert EXPECTED <= set(manifest.artifacts())
    for artifact in manifest.artifacts().values():
        assert artifact.is_intact(tiny_build), artifact.name
    for name in ("report.json", "report.md", "report.html"):
        assert (tiny_build / "report" / name).stat().st_size > 200


def test_report_times_and_scores_every_artifact(tiny_build):
    report = json.loads((tiny_build / "report" / "report.json").read_text())
    rows = {row["name"]: row for row in report["artifacts"]}
    assert set(rows) == {"onnx-fp32", "onnxruntime-int8", "openvino-int8", "openvino-fp32"}
    for row in rows.values():
        assert row["status"] == "measured", row.get("notes")
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert row["fidelity"]["samples"] == 16
    assert abs(rows["onnx-fp32"]["fidelity"]["cosine_vs_fp32"] - 1.0) < 1e-6
    assert abs(rows["openvino-fp32"]["fidelity"]["cosine_vs_fp32"] - 1.0) < 1e-4
    assert rows["openvino-fp32"]["runtime_settings"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert report["selected"]["artifact"] in rows
    assert report["host"]["cores_logical"] >= 1


def test_student_loads_with_plain_timm(tiny_build):
    backbone, _, _, spec = load_student(tiny_build / "student")
    plain = timm.create_model(
        spec["architecture"], pretrained=True, num_classes=0, img_size=spec["img_size"],
        pretrained_cfg_overlay={"file": str(tiny_build / "student" / "student.safetensors"), "custom_load": False}, **spec["model_args"],
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(plain(x), backbone(x), atol=1e-6)
    assert spec["data_config"]["input_size"] == [3, 64, 64]


def test_onnx_carries_metadata(tiny_build):
    meta = read_metadata(tiny_build / "model.onnx")
    assert meta["edgedistill.architecture"] == "vit_tiny_patch16_224"
    assert json.loads(meta["edgedistill.data_config"])["input_size"] == [3, 64, 64]
    assert json.loads(meta["edgedistill.outputs"]) == ["embedding", "logits"]


def test_rerun_skips_unchanged_stages(tiny_build, capsys):
    before = (tiny_build / "student" / "train_log.csv").stat().st_mtime_ns
    onnx_sha = Manifest.load(tiny_build).get("onnx-fp32").sha256
    from tests.conftest import TINY_OVERRIDES

    args = ["build", "--target", "x86-cpu", "--out", str(tiny_build)]
    for override in TINY_OVERRIDES:
        args += ["--set", override]
    args += ["--set", "distill.log_every=7", "--set", "distill.num_workers=1"]  # bookkeeping: nothing to re-train
    assert main(args) == 0
    assert (tiny_build / "student" / "train_log.csv").stat().st_mtime_ns == before
    assert Manifest.load(tiny_build).get("onnx-fp32").sha256 == onnx_sha
    assert "distill: unchanged" in capsys.readouterr().err
    assert main(["distill", str(tiny_build), *[a for o in TINY_OVERRIDES for a in ("--set", o)]]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "distill: unchanged" in err and "kept student ->" in err and "wrote" not in err  # nothing was written


def test_failed_stage_never_looks_finished(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["build", "--out", str(out), "--set", f"data.source={tmp_path / 'missing'}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: image source")
    manifest = Manifest.load(out)
    assert manifest.data["status"] == "failed" and manifest.data["failed_stage"] == "distill"
    assert not (out / "report").exists() and not (out / "student").exists()


def test_jetson_build_on_a_host_without_tensorrt(tiny_build, tmp_path, capsys):
    """Every stage that can run here runs; TensorRT engines are left as a bundle with instructions."""
    import shutil

    from tests.conftest import TINY_OVERRIDES

    out = tmp_path / "orin"
    shutil.copytree(tiny_build, out)
    args = ["build", "--target", "jetson-orin", "--out", str(out)]
    for override in TINY_OVERRIDES:
        args += ["--set", override]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "distill: unchanged" in err and "remaining:" in err and "edgedistill compile" in err
    manifest = Manifest.load(out)
    bundle = manifest.get("tensorrt-bundle")
    assert bundle.status == "pending"
    bundle_dir = out / bundle.path
    assert (bundle_dir / "bundle.json").is_file() and (bundle_dir / "build_engines.sh").is_file()
    assert "trtexec" in (bundle_dir / "build_engines.sh").read_text()
    report = json.loads((out / "report" / "report.json").read_text())
    rows = {row["name"]: row for row in report["artifacts"]}
    # No engine ran here: rows are roofline estimates (or pending), never passed off as measured.
    assert {rows["tensorrt-int8"]["status"], rows["tensorrt-fp16"]["status"]} <= {"estimated", "pending"}
    assert report["selected"]["artifact"] is None
    assert json.loads((bundle_dir / "bundle.json").read_text())["calibration"]["file"].endswith("calibration.npy")
    assert rows["tensorrt-int8"]["fidelity"]["cosine_vs_fp32"] > 0.9  # measured on the same QDQ graph under ORT
    assert any("edgedistill compile" in step for step in report["remaining_steps"])


def test_a_rerun_stage_drops_its_old_outputs_and_notices_an_edited_recipe(tiny_build, tmp_path, capsys):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("source: bundled\nsamples: 8\nseed: 1\n")
    quantize = ["quantize", str(out), "--target", "x86-cpu", "--set", f"quantize.calibration={recipe}"]
    assert main(quantize) == 0
    capsys.readouterr()
    recipe.write_text("source: bundled\nsamples: 9\nseed: 1\n")  # same path, new content
    assert main(quantize) == 0
    assert "quantize: unchanged" not in capsys.readouterr().err

    # a failed quantize leaves no INT8 model behind for bench to time and select
    assert main(["quantize", str(out), "--target", "x86-cpu", "--set", f"quantize.calibration={tmp_path / 'missing'}"]) == 2
    manifest = Manifest.load(out)
    assert manifest.data["failed_stage"] == "quantize" and not {"onnxruntime-int8", "openvino-int8"} & set(manifest.artifacts())
    assert main(quantize) == 0
    manifest = Manifest.load(out)
    assert {"onnxruntime-int8", "openvino-int8"} <= set(manifest.artifacts()) and "failed_stage" not in manifest.data


def test_a_broken_rebuild_never_reads_as_complete_nor_passes_gates(tiny_build, tmp_path, capsys):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    assert main(["bench", str(out), "--target", "x86-cpu"]) == 0
    assert "bench: unchanged" in capsys.readouterr().err  # its own last output no longer changes its key

    assert main(["bench", str(out), "--target", "x86-cpu", "--pin-cpus", "99"]) == 2  # a CPU this host does not have
    manifest = Manifest.load(out)
    assert manifest.data["status"] == "failed" and manifest.data["failed_stage"] == "bench"
    assert not (out / "report").exists()  # the last run's report described outputs this run replaced
    capsys.readouterr()
    assert main(["report", str(out), "--min-cosine", "0.5"]) == 1  # the old report.json must not pass CI
    assert "is failed (bench)" in capsys.readouterr().err
    for inside in ("bench/bench.json", "report/report.json"):  # nor its files, named instead of the folder
        shutil.copytree(tiny_build / "report", out / "report", dirs_exist_ok=True)
        assert main(["report", str(out / inside), "--min-cosine", "0.5"]) == 1
        assert f"build {out} is failed (bench)" in capsys.readouterr().err
    shutil.rmtree(out / "report")
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0  # no gates: the report itself says its figures may be stale
    assert capsys.readouterr().out.split("\n")[2].startswith("> **Warning:** build ")
    assert "is failed (bench)" in (tmp_path / "r" / "report.md").read_text() and "Warning:" in (tmp_path / "r" / "report.html").read_text()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["warnings"][0].endswith("so its report may not describe it")

    assert main(["export", str(out), "--target", "x86-cpu", "--force"]) == 0
    manifest = Manifest.load(out)  # everything made from the old model.onnx is gone with it
    assert not {"onnxruntime-int8", "openvino-int8", "openvino-fp32", "bench"} & set(manifest.artifacts())
    assert set(manifest.data["stages"]) == {"distill", "export"}


def test_an_artifact_deleted_after_bench_is_noticed_by_bench_and_by_report_gates(tiny_build, tmp_path, capsys):
    """The copy-to-device flow: a partial copy (or an artifact edited since) must not read as benched."""
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    int8 = Manifest.load(out).artifacts()["onnxruntime-int8"].abspath(out)
    int8.unlink()
    capsys.readouterr()
    assert main(["report", str(out), "--min-cosine", "0.5"]) == 1  # the report.json left behind must not pass CI
    assert "artifacts missing or changed since they were benched (onnxruntime-int8)" in " ".join(capsys.readouterr().err.split())
    assert main(["bench", str(out), "--target", "x86-cpu"]) == 2  # never "unchanged", never a traceback
    assert "lacks onnxruntime-int8 (or it changed on disk)" in " ".join(capsys.readouterr().err.split())
    manifest = Manifest.load(out)
    assert manifest.data["status"] == "incomplete" and manifest.data["changed_artifacts"] == ["onnxruntime-int8"]
    assert main(["report", str(out), "--min-cosine", "0.5"]) == 1


def test_a_failed_run_on_a_mistake_then_the_old_settings_reuse_what_is_on_disk(tiny_build, tmp_path, capsys):
    """A typo on a finished build must not cost the trained student: the run after it, with the build's
    own settings, finds every stage's earlier outputs intact and reuses them."""
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    student = Manifest.load(out).artifacts()["student"].sha256
    assert main(["build", "--out", str(out), "--set", f"data.source={tmp_path / 'no-such-folder'}"]) == 2
    assert Manifest.load(out).data["status"] == "failed" and "student" not in Manifest.load(out).artifacts()
    capsys.readouterr()
    assert main(["build", "--out", str(out)]) == 0  # the saved config is the last one a stage succeeded with
    said = " ".join(capsys.readouterr().err.split())
    for stage in ("distill", "export", "quantize", "compile", "bench"):
        assert f"{stage}: unchanged since an earlier run" in said, stage
    manifest = Manifest.load(out)
    assert manifest.data["status"] == "complete" and manifest.artifacts()["student"].sha256 == student


def test_a_value_a_stage_refuses_is_not_saved_into_the_build(tiny_build, tmp_path):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    assert main(["bench", str(out), "--pin-cpus", "999"]) == 2  # a CPU this host lacks: only the stage can tell
    assert Manifest.load(out).data["config"]["bench"]["pin_cpus"] == []
    assert main(["bench", str(out)]) == 0 and Manifest.load(out).data["status"] == "complete"

    # a run whose first stages succeed keeps their sections, not the mistake in a later one (build checks the pins
    # before its first stage: images it cannot decode, only bench finds)
    undecodable = tmp_path / "labelled"
    for label in ("a", "b"):
        (undecodable / label).mkdir(parents=True)
        for i in range(2):
            (undecodable / label / f"{i}.png").write_bytes(b"not a png")
    assert main(["build", "--out", str(out), "--set", "export.opset=18", "--set", "bench.iterations=6",
                 "--set", f"bench.eval_dir={undecodable}"]) == 2  # export re-runs and succeeds, bench refuses
    saved = Manifest.load(out).data["config"]
    assert saved["export"]["opset"] == 18 and saved["bench"]["eval_dir"] is None and saved["bench"]["iterations"] == 5
    assert main(["bench", str(out)]) == 0


def test_bench_after_quantize_alone_asks_for_compile_first(tiny_build, tmp_path, capsys, monkeypatch):
    # quantize re-run alone drops compile's records: bench alone would time, and select from, only what is left
    import shutil

    from edgedistill.quantize import stage

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    found, real = [], stage.evaluation_apart
    monkeypatch.setattr(stage, "evaluation_apart", lambda *args: found.append(args) or real(*args))
    assert main(["quantize", str(out), "--set", "quantize.method=percentile"]) == 0
    assert len(found) == 1  # the evaluation's images (decoded to find them) found once: for the key, then handed to the stage
    capsys.readouterr()
    assert main(["bench", str(out)]) == 2
    assert f"run edgedistill compile {out} first" in capsys.readouterr().err
    assert main(["compile", str(out)]) == 0 and main(["bench", str(out)]) == 0
    assert {a["name"] for a in json.loads((out / "bench" / "bench.json").read_text())["artifacts"]} >= {"onnx-fp32", "openvino-fp32"}


def test_one_stage_for_another_target_is_refused_and_a_profile_file_is_remembered(tiny_build, tmp_path, capsys):
    import shutil

    import pytest

    from edgedistill.errors import EdgedistillError

    from edgedistill.cli import _pipeline

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    capsys.readouterr()
    assert main(["compile", str(out), "--target", "jetson-orin"]) == 2  # its INT8 model was quantized for x86-cpu
    assert "was built for x86-cpu, not jetson-orin" in " ".join(capsys.readouterr().err.split())

    profile = tmp_path / "x86-cpu.yaml"  # a user's file named like a bundled target, with its own budget
    profile.write_text((Path(__file__).parents[1] / "targets" / "x86-cpu.yaml").read_text().replace("min_cosine: 0.98", "min_cosine: 0.5"))
    pipe = _pipeline(out, str(profile), None, ())
    pipe.manifest.save()
    profile.unlink()  # the folder keeps its own copy: it travels with the folder to the device
    again = _pipeline(out, None, None, ())
    assert again.target.min_cosine == 0.5 and again.target.source == str(out / "target.yaml")
    (out / "target.yaml").unlink()
    with pytest.raises(EdgedistillError, match="was built for the target profile file .*, which is gone"):
        _pipeline(out, None, None, ())


def test_a_bundle_whose_preflight_finds_errors_fails_compile(tiny_build, tmp_path):
    """The bundle's README says errors block the engine build: CI must see that on the host."""
    import shutil

    import pytest

    from edgedistill.backends import compile_stage
    from edgedistill.errors import EdgedistillError
    from edgedistill.targets import load_target

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    found = Manifest.load(out).artifacts()  # the INT8 model quantized for x86-cpu: uint8 activations, int32 biases
    with pytest.raises(EdgedistillError, match="TensorRT preflight of the int8 model") as error:
        compile_stage._tensorrt({"onnx": found["onnx-fp32"], "onnxruntime-int8": found["onnxruntime-int8"]}, out, load_target("jetson-orin"))
    assert error.value.fix and (out / "trt_bundle" / "README.md").is_file()


def test_stages_after_a_rerun_whose_inputs_came_out_the_same_are_reused(tiny_build, tmp_path, capsys):
    """bench.eval_images re-runs export (it writes the eval views), whose model.onnx comes out
    byte-identical: quantize and compile find their earlier outputs instead of redoing them."""
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    capsys.readouterr()
    assert main(["build", "--out", str(out), "--set", "bench.eval_images=12"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "export: unchanged" not in said and "bench: unchanged" not in said
    assert "quantize: unchanged since an earlier run" in said and "compile: unchanged since an earlier run" in said


def test_a_reused_quantize_stage_still_removes_what_a_killed_one_left(tiny_build, tmp_path, capsys):
    import shutil
    import subprocess
    import sys

    from edgedistill.quantize.scratch import SCRATCH

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    left = out / "quantized" / f".{SCRATCH}.partial-abc123xy-{dead}"
    left.mkdir()
    (left / "prepared.onnx").write_bytes(b"x" * 1000)  # a model-sized file, for a ViT-L
    assert main(["quantize", str(out)]) == 0
    assert "unchanged" in capsys.readouterr().err and not left.exists()


@pytest.mark.parametrize("target, install", [
    ("intel-npu", "there: pip install edgedistill"),  # nothing measured here: copy and bench there, not "nothing left"
    ("arm64-cpu", "there: pip install edgedistill"),
    ("nvidia-gpu", "there: pip install 'edgedistill[tensorrt]'; pip uninstall -y onnxruntime && pip install onnxruntime-gpu"),
    ("jetson-orin", "there: pip install edgedistill, with the JetPack's own TensorRT Python bindings (python3-libnvinfer)"),
])
def test_remaining_steps_name_the_device_and_its_runtimes_for_every_target_that_does_not_run_here(tmp_path, target, install):
    from edgedistill.config import load_config
    from edgedistill.pipeline import Pipeline
    from edgedistill.targets import load_target

    steps = Pipeline(load_config(), load_target(target), tmp_path / "b").remaining_steps()
    assert steps[0] == f"copy the build folder '{tmp_path / 'b'}' to the {target} device" and steps[1] == install
    assert steps[-1] == f"there: edgedistill bench {tmp_path / 'b'} --target {target}"
    assert Pipeline(load_config(), load_target("x86-cpu"), tmp_path / "c").remaining_steps() == []  # measured here


def test_jetpack_5_remaining_steps_build_with_trtexec_and_do_not_pip_install(tmp_path):
    from edgedistill.config import load_config
    from edgedistill.pipeline import Pipeline
    from edgedistill.targets import load_target

    # a pending bundle as compile records it
    pipeline = Pipeline(load_config(), load_target("jetson-orin-jp5"), tmp_path / "b")
    bundle = Artifact(kind="trt-bundle", path="trt_bundle", name="tensorrt-bundle", status="pending")
    pipeline.artifacts = lambda: {"tensorrt-bundle": bundle}
    steps = pipeline.remaining_steps()
    assert steps[0].startswith("copy the build folder") and steps[1].startswith("there: bash trt_bundle/build_engines.sh")
    assert len(steps) == 2 and not any("pip install" in s or "edgedistill bench" in s for s in steps)


def test_a_restored_build_over_a_fresh_checkout_of_its_images_keeps_its_student(tmp_path, capsys, monkeypatch):
    """CI restores a build folder from its cache over a fresh `git checkout` (new mtimes, maybe another
    path): the stages whose images did not change are reused. A folder an older edgedistill keyed by
    mtimes keeps its student too (its key is re-recorded), a student trained again to the same weights
    keeps its export, and a changed image still trains again."""
    import os
    import shutil

    from edgedistill import pipeline
    from edgedistill.data import source_stamp
    from edgedistill.data.sample_photos import bundled_photo_paths

    from .conftest import TINY_OVERRIDES

    images = tmp_path / "images"
    images.mkdir()
    for path in bundled_photo_paths()[:4]:
        shutil.copy(path, images / path.name)
    out = tmp_path / "b"
    args = ["--target", "x86-cpu", *[a for o in (*TINY_OVERRIDES, f"data.source={images}") for a in ("--set", o)]]
    # an older edgedistill: every source stamped by mtime, a student known by its folder's digest
    monkeypatch.setattr(source_stamp, "CONTENT_STAMP_BYTES", -1)
    monkeypatch.setattr(pipeline, "model_digest", lambda student: student.sha256)
    assert main(["distill", str(out), *args]) == 0 and main(["export", str(out), *args]) == 0
    legacy = Manifest.load(out).data["stages"]["distill"]["key"]
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["distill", str(out), *args]) == 0 and main(["export", str(out), *args]) == 0
    assert capsys.readouterr().err.count(": unchanged, reusing") == 2
    assert Manifest.load(out).data["stages"]["distill"]["key"] != legacy  # re-recorded by content

    for path in images.iterdir():
        os.utime(path, ns=(10**18, 10**18))
    assert main(["distill", str(out), *args]) == 0 and main(["export", str(out), *args]) == 0
    assert capsys.readouterr().err.count(": unchanged, reusing") == 2

    moved = tmp_path / "checkout-elsewhere" / "images"  # the same images at another path: the path's text is not the key
    shutil.copytree(images, moved)
    moved_args = [a if a != f"data.source={images}" else f"data.source={moved}" for a in args]
    assert main(["distill", str(out), *moved_args]) == 0 and main(["export", str(out), *moved_args]) == 0
    assert capsys.readouterr().err.count(": unchanged, reusing") == 2
    assert Manifest.load(out).data["config"]["data"]["source"] == str(moved)  # what later commands start from
    assert main(["distill", str(out), *args, "--force"]) == 0  # trained again, to the same weights
    assert main(["export", str(out), *args]) == 0  # the student's train_log.csv differs, its weights do not
    assert "export: unchanged since an earlier run" in capsys.readouterr().err  # its record, set aside by the retraining, is back

    first = sorted(images.iterdir())[0]
    first.write_bytes(first.read_bytes()[:-1] + bytes([first.read_bytes()[-1] ^ 1]))  # one byte, same size and mtime
    os.utime(first, ns=(10**18, 10**18))
    assert main(["distill", str(out), *args]) == 0
    assert "distill: unchanged" not in capsys.readouterr().err


def test_a_build_restored_onto_another_runner_is_benched_there_not_gated_on_the_old_figures(tiny_build, tmp_path, capsys, monkeypatch):
    import shutil

    from edgedistill.bench import host

    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    capsys.readouterr()
    assert main(["bench", str(out), "--target", "x86-cpu"]) == 0
    assert "bench: unchanged" in capsys.readouterr().err  # the same machine: its measurement stands
    real = host.describe_host
    # the clock moves, a container gets a new hostname: not another machine
    monkeypatch.setattr(host, "describe_host", lambda: {**real(), "cpu_ghz": 9.9, "memory_gb": 1.0, "hostname": "a1b2c3d4e5f6"})
    assert main(["bench", str(out), "--target", "x86-cpu"]) == 0
    assert "bench: unchanged" in capsys.readouterr().err
    for change in ({"cpu_model": "Intel Xeon Platinum 8370C"}, {"isa": ["avx2"]}, {"versions": {**real()["versions"], "onnxruntime": "9.9"}}):
        monkeypatch.setattr(host, "describe_host", lambda: {**real(), **change})
        assert main(["bench", str(out), "--target", "x86-cpu"]) == 0
        assert "bench: unchanged" not in capsys.readouterr().err, change


def test_a_quantize_an_older_edgedistill_keyed_is_redone_for_its_qdq_layout(tmp_path, capsys):
    """e81ce60 keyed quantize by the whole quantize section and [recipe, [mtime stamp]]. Its int8 models put
    Q/DQ on MatMul outputs, which onnxruntime 1.18-1.31 runs wrong (ort_static.NO_OUTPUT_QDQ): they are redone."""
    import shutil

    from edgedistill.config import load_config
    from edgedistill.pipeline import Pipeline, _key
    from edgedistill.quantize.stage import calibration_recipe
    from edgedistill.targets import load_target

    from .conftest import TINY_OVERRIDES

    images = tmp_path / "images"
    images.mkdir()
    for path in bundled_photo_paths()[:4]:
        shutil.copy(path, images / path.name)
    out = tmp_path / "b"
    sets = [*TINY_OVERRIDES, f"data.source={images}"]
    args = ["--target", "x86-cpu", *[a for o in sets for a in ("--set", o)]]
    for command in ("distill", "export", "quantize"):
        assert main([command, str(out), *args]) == 0
    manifest = Manifest.load(out)
    cfg, target = load_config(None, sets), load_target("x86-cpu")
    pipeline = Pipeline(cfg, target, out)
    recipe, onnx = calibration_recipe(cfg, target), manifest.artifacts()["onnx-fp32"]
    old = _key(cfg.section_hash("quantize"), target.name, target.calibration, target.backends, target.precisions, target.min_cosine,
               target.min_top1_agreement, onnx.sha256, [recipe.__dict__, pipeline._file_inputs(recipe.source, legacy=True)])
    current = manifest.data["stages"]["quantize"]["key"]
    assert old != current
    manifest.data["stages"]["quantize"]["key"] = old
    manifest.save()
    del pipeline
    capsys.readouterr()
    assert main(["quantize", str(out), *args]) == 0
    assert "quantize: unchanged" not in capsys.readouterr().err
    assert Manifest.load(out).data["stages"]["quantize"]["key"] == current
