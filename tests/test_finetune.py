"""Fine-tuning on labels (distill/finetune.py, task-oriented transfer steps 1 and 3): the held-out split, the
optimizer's groups, `edgedistill finetune-teacher` on real Fashion-MNIST images, and its refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors import safe_open

from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.distill import finetune_teacher as finetune_teacher_module
from edgedistill.distill.finetune import FinetuneSettings, parameter_groups, split_labelled
from edgedistill.distill.finetune_teacher import STAMP_KEY, distill_settings, finetune_teacher
from edgedistill.errors import EdgedistillError
from edgedistill.models.checkpoint import load_weights
from edgedistill.models.teacher import create_primary_teacher

from .fashion_mnist import installed, write_class_folders

TROUSER, BAG = 1, 8
# a random one-block ViT-Tiny: a timm classifier that builds in well under a second
TINY_TEACHER = ["teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28",
                "teacher.model_args={depth: 1, patch_size: 14}", "distill.device=cpu"]


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    """12 trousers and 12 bags from Fashion-MNIST's training split, as class_1/ and class_8/."""
    return write_class_folders(tmp_path_factory.mktemp("labels"), "train", 12, classes=(TROUSER, BAG))


@installed
def test_the_held_out_share_is_stratified_spread_and_the_same_every_run(two_classes, tmp_path):
    split = split_labelled(two_classes, 0.25)
    assert split.classes == ["class_1", "class_8"] and len(split.train) == 18 and len(split.held_out) == 6
    held = [split.labels[i] for i in split.held_out]
    assert held.count(0) == held.count(1) == 3  # three of each class's twelve
    assert set(split.train).isdisjoint(split.held_out)
    assert split_labelled(two_classes, 0.25).held_out == split.held_out
    assert split_labelled(two_classes, 0).held_out == [] and len(split_labelled(two_classes, 0).train) == 24
    # a class of two keeps one to train on, however large the share
    small = write_class_folders(tmp_path / "small", "train", 2, classes=(TROUSER, BAG))
    assert len(split_labelled(small, 0.9).train) == 2


def test_the_classifier_learns_ten_times_faster_and_decay_spares_what_timm_spares():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, num_classes=3)
    groups = parameter_groups(model, model.get_classifier(), FinetuneSettings(lr=1e-4, weight_decay=0.05))
    head = {id(p) for p in model.get_classifier().parameters()}
    spared = {id(model.cls_token), id(model.pos_embed)}  # 3-d, listed by the ViT's no_weight_decay()
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # no group mixes the classifier with the backbone
        assert group["lr"] == pytest.approx(1e-3 if in_head == {True} else 1e-4)
        assert all((p.ndim > 1 and id(p) not in spared) == (group["weight_decay"] > 0) for p in group["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # wrapped, as step 3's deployed student wraps its backbone: the names still reach the wrapped ViT's tensors
    wrapped = torch.nn.Sequential(model)
    decayed = {id(p) for g in parameter_groups(wrapped, model.get_classifier(), FinetuneSettings()) if g["weight_decay"] for p in g["params"]}
    assert decayed and not decayed & spared
    with pytest.raises(EdgedistillError, match="not part of the model"):
        parameter_groups(model, torch.nn.Linear(2, 2), FinetuneSettings())


@pytest.mark.parametrize("settings", [FinetuneSettings(steps=0), FinetuneSettings(lr=0), FinetuneSettings(holdout=1.0),
                                      FinetuneSettings(batch_size=0)])
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(EdgedistillError, match="out of range"):
        settings.check()


@installed
def test_finetune_teacher_learns_the_labels_and_writes_a_checkpoint_distillation_loads(two_classes, tmp_path, capsys):
    """The offline ImageNet teacher, fine-tuned on 18 images of two classes, tells the 6 held-out ones apart."""
    out = tmp_path / "teacher_ft.safetensors"
    assert main(["finetune-teacher", str(two_classes), str(out), "--steps", "12", "--batch-size", "9", "--lr", "2e-4",
                 "--holdout", "0.25", "--head-init", "random", "--set", "teacher.img_size=64", "--set", "distill.device=cpu"]) == 0
    printed = capsys.readouterr().err  # the console writes to stderr
    with safe_open(str(out), framework="pt") as f:
        stamp = json.loads(f.metadata()[STAMP_KEY])
    assert stamp["architecture"] == "tf_efficientnet_lite0" and stamp["model_args"] == {"num_classes": 2}
    assert stamp["classes"] == ["class_1", "class_8"] and (stamp["train_images"], stamp["held_out_images"]) == (18, 6)
    assert stamp["held_out_top1_after"] >= 0.83 > stamp["held_out_top1_before"]  # 5 of the 6 or more; a random new head is near chance
    # the printed settings build the teacher distillation uses, with the fine-tuned two-class classifier
    sets = distill_settings(out, stamp)
    assert " ".join(f"--set {s}" for s in sets[:2]) in printed and "distill.logit_weight=1" in printed
    teacher = create_primary_teacher(load_config(None, sets).teacher)
    assert teacher.classifier.out_features == 2
    model = timm.create_model("tf_efficientnet_lite0", num_classes=2)
    load_weights(model, out)  # a plain timm checkpoint
    assert torch.equal(model.get_classifier().weight, teacher.classifier.weight)


@installed
def test_a_probe_head_starts_from_a_linear_probe_that_already_classifies(two_classes, tmp_path):
    """LP-FT (--head-init probe): before one fine-tuning step, the new head is a logistic regression of the frozen
    teacher's features of the 18 training images, and it tells the 6 held-out images apart (a random head is near
    chance: the test above)."""
    out = tmp_path / "teacher_ft.safetensors"
    stamp = finetune_teacher(load_config(None, ["teacher.img_size=64", "distill.device=cpu"]), two_classes, out,
                             FinetuneSettings(steps=1, batch_size=9, lr=1e-6, holdout=0.25), head_init="probe")
    assert stamp["head_init"] == "linear_probe" and stamp["probe_images"] == 18 and stamp["probe_c"] in (0.01, 0.1, 1.0, 10.0)
    assert stamp["held_out_top1_before"] >= 0.83


def test_the_probe_folds_its_standardisation_into_the_head():
    """weight @ x + bias on raw features ranks the classes as sklearn's regression on the standardised ones, for two
    classes (one row in sklearn) and for more."""
    from sklearn.linear_model import LogisticRegression

    from edgedistill.distill.probe_head import fit_logistic

    rng = np.random.default_rng(0)
    for classes, per_class in ((2, 2), (4, 2), (3, 6)):
        labels = np.repeat(np.arange(classes), per_class)
        features = (rng.normal(0, 1, (len(labels), 6)) + labels[:, None] * 0.7) * 50 + 300  # far from standard: the folding matters
        weight, bias, c = fit_logistic(features, labels, classes)
        assert c == 1.0 if per_class < 3 else c in (0.01, 0.1, 1.0, 10.0)  # cross-validated from 3 images a class
        scaled = (features - features.mean(0)) / (features.std(0) + 1e-6)
        reference = LogisticRegression(C=c, max_iter=2000).fit(scaled, labels)
        probe = rng.normal(0, 1, (20, 6)) * 50 + 300
        ours = probe @ weight.T + bias
        np.testing.assert_array_equal(ours.argmax(1), reference.predict((probe - features.mean(0)) / (features.std(0) + 1e-6)))
        softmax = np.exp(ours - ours.max(1, keepdims=True))
        np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True),
                                   reference.predict_proba((probe - features.mean(0)) / (features.std(0) + 1e-6)), atol=2e-3)  # CV refits to its own tolerance


def test_an_unknown_head_init_is_refused():
    with pytest.raises(EdgedistillError, match="head init 'zeros' is not one of random, probe"):
        finetune_teacher(load_config(None, []), Path("unused"), Path("unused.safetensors"), FinetuneSettings(), "zeros")


@installed
def test_a_second_run_replaces_its_own_file_only(two_classes, tmp_path):
    cfg = load_config(None, TINY_TEACHER)
    out = tmp_path / "t.safetensors"
    finetune_teacher(cfg, two_classes, out, FinetuneSettings(steps=1, batch_size=4, holdout=0))
    first = out.read_bytes()
    finetune_teacher(cfg, two_classes, out, FinetuneSettings(steps=2, batch_size=4, holdout=0))  # its own file: replaced
    assert out.read_bytes() != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left beside it


@installed
@pytest.mark.parametrize("case, match", [
    ("suffix", "must be a .safetensors file"),
    ("foreign", "exists and holds no fine-tuned teacher, so it is not replaced"),
    ("checkpoint", "is teacher.checkpoint, which it would replace"),
    ("open_clip", "has no classifier to fine-tune"),
    ("labels", "needs at least 2 class subfolders"),
])
def test_refusals_come_before_any_model_is_built(two_classes, tmp_path, monkeypatch, case, match):
    monkeypatch.setattr(finetune_teacher_module, "_build", lambda *a: pytest.fail("a model was built"))
    foreign = tmp_path / "model.safetensors"
    torch.save({}, foreign)
    sets = list(TINY_TEACHER)
    out, labels = tmp_path / "t.safetensors", two_classes
    if case == "suffix":
        out = tmp_path / "t.pth"
    elif case == "foreign":
        out = foreign
    elif case == "checkpoint":
        sets.append(f"teacher.checkpoint={foreign}")
        out = foreign
    elif case == "open_clip":
        sets = ["teacher.name=open_clip:ViT-B-32/openai"]
    else:
        labels = tmp_path / "one_class"
        write_class_folders(labels, "train", 3, classes=(BAG,))
    with pytest.raises(EdgedistillError, match=match):
        finetune_teacher(load_config(None, sets), labels, out, FinetuneSettings(steps=1))
    assert not out.exists() or out == foreign


def test_a_refused_labels_folder_leaves_no_output_folder(tmp_path):
    with pytest.raises(EdgedistillError, match="is not a folder"):
        finetune_teacher(load_config(None, TINY_TEACHER), tmp_path / "missing", tmp_path / "new" / "t.safetensors", FinetuneSettings())
    assert not (tmp_path / "new").exists()


def test_an_input_under_an_unknown_users_home_is_compared_not_crashed_on(tmp_path):
    from edgedistill.output_files import check_replaceable

    check_replaceable(tmp_path / "out.txt", "transfer set", {"the pool": "~no_such_user_here/pool"}, None, "runs/t.txt")  # no RuntimeError
    (tmp_path / "x.safetensors").write_bytes(b"x")
    with pytest.raises(EdgedistillError, match="holds no fine-tuned teacher") as raised:
        check_replaceable(tmp_path / "x.safetensors", "fine-tuned teacher", {}, lambda p: False, "runs/t.safetensors")
    assert raised.value.fix == "pass a new path, or delete the file if it is a damaged fine-tuned teacher file"
