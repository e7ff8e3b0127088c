"""The names of the teacher classifier's columns (distill/class_names.py), which the student records and bench
scores its class output by: ImageNet synsets for published ImageNet weights, the folder's classes for a teacher from
finetune-teacher, none for weights of unknown origin; and a real build scored on synset-named folders of photos."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps
from torch import nn

from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill.class_names import classifier_classes

TABBY, ESPRESSO = "n02123045", "n07920052"  # ImageNet-1k classes 281 and 967


def head(width: int, features: int = 192) -> nn.Sequential:
    return nn.Sequential(nn.Identity(), nn.Linear(features, width))


def test_published_imagenet_weights_name_their_synsets_and_other_weights_none(tmp_path):
    offline = classifier_classes(load_config(None, []), head(1000, 1280))
    assert len(offline) == 1000 and offline[0] == "n01440764" and offline[281] == TABBY and offline[967] == ESPRESSO
    hub = load_config(None, ["teacher.name=vit_tiny_patch16_224.augreg_in21k_ft_in1k"])  # built on the meta device: no download
    assert classifier_classes(hub, head(1000)) == offline
    for unknown in (["teacher.checkpoint=" + str(tmp_path / "mine.safetensors")], ["teacher.pretrained=false"]):
        assert classifier_classes(load_config(None, ["teacher.name=vit_tiny_patch16_224", *unknown]), head(1000)) is None
    assert classifier_classes(hub, head(10)) is None  # another width than the subset's: not those classes
    # an in21k head resized to 1000 by model_args is timm's new random head, not ImageNet-1k's classes
    resized = load_config(None, ["teacher.name=vit_tiny_patch16_224.augreg_in21k", "teacher.model_args={num_classes: 1000}"])
    assert classifier_classes(resized, head(1000)) is None
    in21k = classifier_classes(load_config(None, ["teacher.name=vit_tiny_patch16_224.augreg_in21k"]), head(21843))
    assert len(in21k) == 21843 and in21k == sorted(in21k)  # timm's synset list, in the head's (sorted) order
    assert classifier_classes(hub, None) is None


@pytest.fixture
def build(tiny_build, tmp_path):
    out = tmp_path / "build"
    shutil.copytree(tiny_build, out)
    return out


def test_a_build_from_the_offline_teacher_scores_its_class_output_on_synset_folders(build, tmp_path):
    """The tiny build's student (offline ImageNet teacher) records the 1000 synsets; bench on a folder laid out as
    ImageNet's (val/<synset>/...) scores each artifact's logits against the labels, by those columns."""
    import onnxruntime as ort

    from edgedistill.bench.labelled import load_labelled

    manifest = json.loads((build / "manifest.json").read_text())
    classes = manifest["artifacts"]["student"]["extra"]["classes"]
    assert len(classes) == 1000 and classes[281] == TABBY
    photos = {p.stem: p for p in bundled_photo_paths()}
    labelled = tmp_path / "val"
    for synset, name in ((TABBY, "chelsea"), (ESPRESSO, "coffee")):
        (labelled / synset).mkdir(parents=True)
        with Image.open(photos[name]) as img:
            img.convert("RGB").save(labelled / synset / "a.png")
            ImageOps.mirror(img.convert("RGB")).save(labelled / synset / "b.png")
    assert main(["bench", str(build), "--eval-dir", str(labelled), "--set", "bench.iterations=2", "--set", "bench.warmup=0"]) == 0
    rows = {r["name"]: r for r in json.loads((build / "bench" / "bench.json").read_text())["artifacts"]}
    x, y, _ = load_labelled(labelled, manifest["artifacts"]["onnx-fp32"]["data_config"])
    logits = ort.InferenceSession(str(build / manifest["artifacts"]["onnx-fp32"]["path"])).run(["logits"], {"input": x})[0]
    assert rows["onnx-fp32"]["fidelity"]["task_top1"] == round(float((logits.argmax(1) == np.array([281, 967])[y]).mean()), 4)
    assert all(0 <= r["fidelity"]["task_top1"] <= 1 for r in rows.values() if r.get("status") == "measured")
    assert "task top-1" in (build / "report" / "report.md").read_text()
