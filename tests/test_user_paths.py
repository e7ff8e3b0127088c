"""Paths as users write them: a calibration source checked before the first stage, a recipe's relative
source, shell-quoted remaining steps, a '[' in a shard's folder name, and '~' in a checkpoint or a target file."""

from __future__ import annotations

import shlex
import shutil
import tarfile

import pytest
import torch

from edgedistill.artifacts import Artifact
from edgedistill.config import load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.data.shards import shard_paths
from edgedistill.errors import EdgedistillError
from edgedistill.pipeline import STAGES, Pipeline
from edgedistill.profiles import bundled_dir
from edgedistill.quantize.calibration import load_recipe
from edgedistill.targets import load_target


def _no_stage_runs(monkeypatch):
    for stage in STAGES:
        monkeypatch.setattr(Pipeline, stage, lambda self, stage=stage: pytest.fail(f"{stage} ran before the calibration check"))


@pytest.mark.parametrize("setting", ["recipe.yaml", "list.txt", "shards.tar"])
def test_a_missing_calibration_source_is_refused_before_the_first_stage(tmp_path, monkeypatch, setting):
    (tmp_path / "recipe.yaml").write_text(f"source: {tmp_path / 'no such dir'}\nsamples: 8\nseed: 77\n")
    _no_stage_runs(monkeypatch)
    cfg = load_config(overrides=[f"quantize.calibration={tmp_path / setting}"])
    with pytest.raises(EdgedistillError, match="quantize.calibration") as err:
        Pipeline(cfg, load_target("x86-cpu"), tmp_path / "b").build()
    assert "does not exist" in err.value.cause
    assert "read from the recipe file's folder" in err.value.fix  # a source written from the current folder worked before


def test_a_recipe_files_relative_source_resolves_against_its_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "r.yaml").write_text("source: ./calib imgs\nsamples: 8\nseed: 77\n")
    monkeypatch.chdir(tmp_path)
    assert load_recipe("sub/r.yaml").source == str(tmp_path / "sub" / "calib imgs")
    assert load_recipe("bundled-photos").source == "bundled"  # the bundled recipe, and so its key, is as before


def test_a_recipe_files_relative_shard_glob_holds_in_a_folder_named_with_a_bracket(tmp_path, monkeypatch):
    from edgedistill.data.images import ImageSource

    folder = tmp_path / "cal [v2]"
    (folder / "shards").mkdir(parents=True)
    with tarfile.open(folder / "shards" / "train-000.tar", "w") as tar:
        tar.add(bundled_photo_paths()[0], arcname="a.jpg")
    (folder / "r.yaml").write_text("source: shards/train-*.tar\nsamples: 1\nseed: 77\n")
    monkeypatch.chdir(folder)
    assert len(ImageSource(load_recipe("r.yaml").source)) == 1  # '[v2]' is the folder's name, not a glob's class


def test_remaining_steps_paste_into_a_shell_as_one_argument_per_path(tmp_path):
    out = tmp_path / "my builds" / "it's \"q\" é 日本" / "orin 1"
    pipeline = Pipeline(load_config(), load_target("jetson-orin"), out)
    pipeline.artifacts = lambda: {"tensorrt-bundle": Artifact(kind="trt-bundle", path="trt_bundle", name="tensorrt-bundle", status="pending")}
    commands = [shlex.split(step[len("there: "):].split("   (")[0]) for step in pipeline.remaining_steps() if step.startswith("there: edgedistill")]
    assert commands == [["edgedistill", "compile", str(out / "trt_bundle")], ["edgedistill", "bench", str(out), "--target", "jetson-orin"]]


def test_a_shard_whose_folder_name_holds_a_bracket_is_a_file_not_a_glob(tmp_path):
    shard = tmp_path / "shards [v2]" / "train.tar"
    shard.parent.mkdir()
    shard.write_bytes(b"")
    assert shard_paths(str(shard)) == [shard]


def test_a_tilde_in_a_target_file_or_a_checkpoint_is_the_home_folder(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from edgedistill.models.checkpoint import load_weights

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(bundled_dir("targets") / "x86-cpu.yaml", tmp_path / "dev.yaml")
    assert load_target("~/dev.yaml").source == str(tmp_path / "dev.yaml")
    model = torch.nn.Linear(2, 2)
    save_file({k: torch.ones_like(v) for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    load_weights(model, "~/w.safetensors")
    assert bool((model.weight == 1).all())
