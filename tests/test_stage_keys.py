"""Stage keys: a setting that changes what a stage makes re-runs it, one that cannot change it does not, and
builds recorded under the keys of earlier versions keep their stages where their outputs still stand."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from PIL import Image

from edgedistill.artifacts import Artifact, Manifest
from edgedistill.config import load_config
from edgedistill.pipeline import Pipeline
from edgedistill.targets import load_target

from .conftest import TINY_OVERRIDES


@pytest.fixture
def build(tiny_build, tmp_path):
    out = tmp_path / "build"
    shutil.copytree(tiny_build, out)
    return out


def stage_keys(monkeypatch, build, stage: str, target=None, overrides=()) -> tuple[str, list[str]]:
    """The key `stage` would run under, and the older keys that would stand for it, without running it."""
    seen = {}

    def run_stage(self, name, key, work, legacy_keys=None):
        seen[name] = (key, legacy_keys() if legacy_keys is not None else [])
        return []

    monkeypatch.setattr(Pipeline, "_run_stage", run_stage)
    pipeline = Pipeline(load_config(None, [*TINY_OVERRIDES, *overrides]), target or load_target("x86-cpu"), build)
    getattr(pipeline, stage)()
    return seen[stage]


def test_the_quantize_key_follows_the_openvino_device_and_an_npus_batch(build, monkeypatch):
    x86 = load_target("x86-cpu")
    key, older = stage_keys(monkeypatch, build, "quantize", x86)
    assert len(older) == 1  # the key before the device was in it: its IR was made for this device, at a dynamic batch
    gpu_key, gpu_older = stage_keys(monkeypatch, build, "quantize", dataclasses.replace(x86, device="GPU"))
    assert gpu_key != key and gpu_older == []  # the recorded IR names CPU
    npu = dataclasses.replace(x86, backends=("openvino",), device="NPU", batch_opt=1, batch_max=1)
    npu_key, npu_older = stage_keys(monkeypatch, build, "quantize", npu)
    assert npu_older == []  # an NPU's IR has a static batch, which no older key held
    assert stage_keys(monkeypatch, build, "quantize", dataclasses.replace(npu, batch_opt=4, batch_max=4))[0] != npu_key
    ort = dataclasses.replace(x86, backends=("onnxruntime",))
    assert stage_keys(monkeypatch, build, "quantize", ort)[0] == stage_keys(monkeypatch, build, "quantize", dataclasses.replace(ort, device="GPU"))[0]


def test_switching_between_ddp_and_fsdp_does_not_retrain(build, monkeypatch):
    key, older = stage_keys(monkeypatch, build, "distill")
    fsdp_key, fsdp_older = stage_keys(monkeypatch, build, "distill", overrides=["distill.strategy=fsdp"])
    assert fsdp_key == key
    assert fsdp_older[0] != older[0] == key  # the key FSDP builds recorded before held the strategy; DDP ones keep theirs


def test_a_student_retrained_to_the_same_weights_is_not_benched_again(build, monkeypatch):
    key, _ = stage_keys(monkeypatch, build, "bench")
    log = build / "student" / "train_log.csv"
    log.write_text(log.read_text() + "\n")  # another run's timings, the same weights
    manifest = Manifest.load(build)
    student = Artifact.from_dict(manifest.data["artifacts"]["student"])
    again = Artifact.record(build, build / student.path, kind=student.kind, name="student", extra=student.extra)
    assert again.sha256 != student.sha256
    manifest.data["artifacts"]["student"] = dataclasses.asdict(again)
    manifest.save()
    assert stage_keys(monkeypatch, build, "bench")[0] == key


def _cats_and_dogs(tmp_path, ext: str = "png"):
    """A labelled folder of two classes, two images each, for bench.eval_dir."""
    root = tmp_path / "labelled"
    for label, shade in (("cat", 40), ("dog", 200)):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (shade + i,) * 3).save(root / label / f"{i}.{ext}")
    return root


def test_relabelling_the_eval_dir_with_same_size_files_re_runs_bench(build, tmp_path, monkeypatch):
    root = _cats_and_dogs(tmp_path, "bmp")  # uncompressed: every file one size
    overrides = [f"bench.eval_dir={root}"]
    key, older = stage_keys(monkeypatch, build, "bench", overrides=overrides)
    assert older == []  # the names-and-sizes key stands for no bench with an eval_dir: it kept relabelled figures
    assert len(stage_keys(monkeypatch, build, "bench")[1]) == 1  # without one, builds keyed before keep their bench
    cat, dog = (root / "cat" / "0.bmp").read_bytes(), (root / "dog" / "0.bmp").read_bytes()
    (root / "cat" / "0.bmp").write_bytes(dog)  # a labelling mistake fixed: names and sizes as they were
    (root / "dog" / "0.bmp").write_bytes(cat)
    relabelled, _ = stage_keys(monkeypatch, build, "bench", overrides=overrides)
    assert relabelled != key


def test_other_class_names_of_the_students_logits_re_run_a_bench_with_an_eval_dir(build, tmp_path, monkeypatch):
    """task top-1 maps the eval_dir's classes to the logits' columns by the names the student recorded."""
    root = _cats_and_dogs(tmp_path)
    with_dir = [f"bench.eval_dir={root}"]
    unnamed, without_dir = stage_keys(monkeypatch, build, "bench", overrides=with_dir)[0], stage_keys(monkeypatch, build, "bench")[0]
    manifest = Manifest.load(build)
    manifest.data["artifacts"]["student"]["extra"]["classes"] = ["cat", "dog"]
    manifest.save()
    named = stage_keys(monkeypatch, build, "bench", overrides=with_dir)[0]
    manifest.data["artifacts"]["student"]["extra"]["classes"] = ["dog", "cat"]
    manifest.save()
    assert len({unnamed, named, stage_keys(monkeypatch, build, "bench", overrides=with_dir)[0]}) == 3
    assert stage_keys(monkeypatch, build, "bench")[0] == without_dir  # no eval_dir: the names score nothing


def test_a_remade_zero_shot_head_at_the_same_path_re_runs_bench(build, tmp_path, monkeypatch):
    """bench keys the head by its content: new prompts or another teacher's text tower under the same file name re-score."""
    import torch

    from edgedistill.distill.zero_shot_head import write_head

    root = _cats_and_dogs(tmp_path)
    head = tmp_path / "head.safetensors"
    write_head(head, torch.eye(2, 8), {"name": "open_clip:ViT-B-32"}, ["cat", "dog"], templates=["a photo of a {}."])
    with_dir = [f"bench.eval_dir={root}"]
    without_head = stage_keys(monkeypatch, build, "bench", overrides=with_dir)[0]
    first = stage_keys(monkeypatch, build, "bench", overrides=[*with_dir, f"bench.zero_shot_head={head}"])[0]
    write_head(head, torch.eye(2, 8), {"name": "open_clip:ViT-B-32"}, ["cat", "dog"], templates=["a drawing of a {}."])
    again = stage_keys(monkeypatch, build, "bench", overrides=[*with_dir, f"bench.zero_shot_head={head}"])[0]
    assert len({without_head, first, again}) == 3
    assert stage_keys(monkeypatch, build, "bench", overrides=with_dir)[0] == without_head  # unset: the key as before
