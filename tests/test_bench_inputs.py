"""Bench's inputs besides the build: bench.eval_images saved with export, which writes its views (and refused
where the evaluation set has another count), bench.efficiency_from's build folders in bench's key and on its
flag, and its paths and CPUs checked before a build's first stage."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edgedistill.artifacts import Manifest, sha256_file
from edgedistill.bench import stage as bench_stage
from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.errors import EdgedistillError
from edgedistill.pipeline import STAGES, Pipeline
from edgedistill.targets import load_target

from .conftest import TINY_OVERRIDES
from .test_stage_keys import stage_keys


@pytest.fixture
def build(tiny_build, tmp_path):
    out = tmp_path / "build"
    shutil.copytree(tiny_build, out)
    return out


def _no_stage_work(monkeypatch):
    monkeypatch.setattr(Pipeline, "_run_stage", lambda self, stage, *a, **k: pytest.fail(f"{stage} ran"))


def _saved_bench(build) -> dict:
    return Manifest.load(build).data["config"]["bench"]


@pytest.mark.parametrize("command", ["bench", "quantize"])
def test_another_eval_images_count_than_the_evaluation_sets_is_refused_and_not_saved(build, monkeypatch, capsys, command):
    _no_stage_work(monkeypatch)  # refused before the stage: bench timed everything, and saved 8 under a 16-image set
    capsys.readouterr()
    assert main([command, str(build), "--set", "bench.eval_images=8"]) != 0
    said = " ".join(capsys.readouterr().err.split())
    assert "bench.eval_images is 8, but the evaluation set" in said and "has 16 images" in said
    assert f"edgedistill build --out {build} --set bench.eval_images=8" in said
    assert _saved_bench(build)["eval_images"] == 16


def test_export_saves_the_eval_images_it_wrote_and_leaves_the_rest_of_bench(build, monkeypatch):
    from edgedistill.export import evalset, stage

    found = Manifest.load(build).artifacts()  # export's work stood in for: the setting's saving is under test
    monkeypatch.setattr(stage, "run", lambda *a: found["onnx-fp32"])
    monkeypatch.setattr(evalset, "write_evalset", lambda *a: found["evalset"])
    assert main(["export", str(build), "--set", "bench.eval_images=12", "--set", "bench.iterations=7"]) == 0
    saved = _saved_bench(build)
    assert saved["eval_images"] == 12  # the next build keeps the 12 views, not re-exports with 16
    assert saved["iterations"] == 5  # bench's own settings wait for bench


def test_a_build_folder_in_efficiency_from_is_in_bench_key(build, tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    (reference / "bench").mkdir(parents=True)
    shutil.copyfile(build / "bench" / "bench.json", reference / "bench" / "bench.json")
    key, _ = stage_keys(monkeypatch, build, "bench", overrides=[f"bench.efficiency_from=[{reference}]"])
    doc = json.loads((reference / "bench" / "bench.json").read_text())
    doc["created"] = "re-benched"
    (reference / "bench" / "bench.json").write_text(json.dumps(doc))
    assert stage_keys(monkeypatch, build, "bench", overrides=[f"bench.efficiency_from=[{reference}]"])[0] != key
    # a file entry hashes as before, so builds that named files keep their bench
    named = Pipeline(load_config(None, [*TINY_OVERRIDES, f"bench.efficiency_from=[{reference / 'bench' / 'bench.json'}]"]),
                     load_target("x86-cpu"), build)
    assert named._bench_input_digests() == [sha256_file(reference / "bench" / "bench.json")]


def test_a_bench_keyed_when_a_folder_in_efficiency_from_was_not_read_is_kept(build, tmp_path, monkeypatch):
    """Builds benched before the folder's bench.json was in the key (it was left out) keep their figures: an
    upgrade re-timed every artifact, and on a noisy host changed them, with nothing changed."""
    reference = tmp_path / "ref"
    (reference / "bench").mkdir(parents=True)
    shutil.copyfile(build / "bench" / "bench.json", reference / "bench" / "bench.json")
    folder = [f"bench.efficiency_from=[{reference}]"]
    key, older = stage_keys(monkeypatch, build, "bench", overrides=folder)
    monkeypatch.setattr(Pipeline, "_bench_input_digests", lambda self, before=False, files_only=False: [])  # as that code read it
    was, _ = stage_keys(monkeypatch, build, "bench", overrides=folder)
    assert was != key and was in older


def test_the_efficiency_from_flag_takes_a_build_folder(build, tmp_path, monkeypatch, capsys):
    reference = tmp_path / "ref"
    (reference / "bench").mkdir(parents=True)
    shutil.copyfile(build / "bench" / "bench.json", reference / "bench" / "bench.json")
    seen = []
    monkeypatch.setattr(Pipeline, "_run_stage", lambda self, stage, key, work, legacy=None: seen.append(self.cfg.bench.efficiency_from) or [])
    assert main(["bench", str(build), "--efficiency-from", str(reference)]) == 0, capsys.readouterr().err
    assert seen == [(str(reference),)]


def _no_stage_runs(monkeypatch):
    for name in STAGES:
        monkeypatch.setattr(Pipeline, name, lambda self, name=name: pytest.fail(f"{name} ran before bench's settings were checked"))


@pytest.mark.parametrize("setting", ["efficiency_from", "efficiency_from_folder", "eval_dir", "pin_cpus", "zero_shot_head"])
def test_a_bad_bench_input_is_refused_before_the_first_stage(tmp_path, monkeypatch, setting):
    _no_stage_runs(monkeypatch)
    (tmp_path / "not a build").mkdir()
    override = {"efficiency_from": f"bench.efficiency_from=[{tmp_path / 'missing.json'}]",
                "efficiency_from_folder": f"bench.efficiency_from=[{tmp_path / 'not a build'}]",
                "eval_dir": f"bench.eval_dir={tmp_path / 'nonexistent'}",
                "pin_cpus": f"bench.pin_cpus=[{max(os.sched_getaffinity(0)) + 1}]",
                "zero_shot_head": f"bench.zero_shot_head={tmp_path / 'head.safetensors'}"}[setting]
    with pytest.raises(EdgedistillError, match=f"bench.{setting.removesuffix('_folder')}"):
        Pipeline(load_config(overrides=[override]), load_target("x86-cpu"), tmp_path / "b").build()


def test_a_bench_run_reads_efficiency_from_before_timing(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_stage, "_plan", lambda *a: pytest.fail("the evaluation set was run before efficiency_from was read"))
    with pytest.raises(EdgedistillError, match="bench.efficiency_from"):
        bench_stage.run(load_config(overrides=[f"bench.efficiency_from=[{tmp_path / 'missing.json'}]"]), {}, tmp_path, load_target("x86-cpu"))
