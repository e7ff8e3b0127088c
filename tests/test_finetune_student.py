"""Step 3 of task-oriented transfer in the distill stage (distill.finetune_labels): the deployed student is
fine-tuned and saved as scored, its checks come before training, and its settings key the student but no
training checkpoint."""

import json

import pytest
import torch

from edgedistill.config import load_config
from edgedistill.distill import stage, trainer
from edgedistill.distill.finetune import held_out_accuracy, split_labelled
from edgedistill.distill.finetune_student import _Logits
from edgedistill.errors import EdgedistillError
from edgedistill.models.deploy import load_deploy_model
from edgedistill.pipeline import Pipeline
from edgedistill.targets import load_target

from .fashion_mnist import installed, write_class_folders

TROUSER, BAG, SNEAKER = 1, 8, 7
# a random one-block ViT-Tiny teacher whose head scores two classes, and a one-block student
TWO_CLASS = ["teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28",
             "teacher.model_args={depth: 1, patch_size: 14, num_classes: 2}",
             "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
             "data.max_images=3", "distill.batch_size=8", "distill.steps=2", "distill.warmup_steps=1", "distill.tensorboard=false",
             "distill.device=cpu", "distill.finetune_steps=6", "distill.finetune_lr=1e-3", "distill.finetune_holdout=0.25"]


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("labels"), "train", 8, classes=(TROUSER, BAG))


def _config(labels, *extra):
    return load_config(None, TWO_CLASS + [f"distill.finetune_labels={labels}", *extra])


@installed
def test_the_saved_student_is_the_fine_tuned_one_and_records_the_run(labels, tmp_path):
    cfg = _config(labels)
    artifact = stage.run(cfg, {}, tmp_path / "tuned")
    saved = json.loads((tmp_path / "tuned" / "student" / "student.json").read_text())
    record = saved["finetune"]
    assert record["classes"] == ["class_1", "class_8"] and (record["train_images"], record["held_out_images"]) == (12, 4)
    assert artifact.extra["finetune"] == record
    assert saved["classes"] == artifact.extra["classes"] == record["classes"]  # what bench scores the `logits` columns as
    # the deployed model as saved scores the held-out images as the run said it did after fine-tuning
    model, spec = load_deploy_model(tmp_path / "tuned" / "student")
    logits = _Logits(model)  # the deployed `logits` output alone
    accuracy = held_out_accuracy(logits, split_labelled(labels, 0.25), spec["data_config"], torch.device("cpu"),
                                 torch.autocast("cpu", enabled=False), 8, 0)
    assert accuracy == pytest.approx(record["held_out_top1_after"], abs=1e-4)
    # the same run without step 3 saves other weights for all three deployed parts
    stage.run(load_config(None, TWO_CLASS), {}, tmp_path / "plain")
    plain, _ = load_deploy_model(tmp_path / "plain" / "student")
    for part in ("backbone", "token_head", "classifier"):
        tuned, untuned = getattr(model, part).state_dict(), getattr(plain, part).state_dict()
        assert any(not torch.equal(tuned[k], untuned[k]) for k in tuned), part
    assert not {"finetune", "classes"} & set(json.loads((tmp_path / "plain" / "student" / "student.json").read_text()))


@installed
def test_a_class_count_the_classifier_does_not_score_is_refused_before_training(labels, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "train", lambda job: pytest.fail("training started"))
    three = write_class_folders(tmp_path / "three", "train", 3, classes=(TROUSER, BAG, SNEAKER))
    with pytest.raises(EdgedistillError, match="scores 2 classes, but distill.finetune_labels .* holds 3") as raised:
        stage.run(_config(three), {}, tmp_path / "build")
    assert "finetune-teacher" in raised.value.fix
    assert not (tmp_path / "build" / "student").exists()


@installed
@pytest.mark.parametrize("teacher", ["open_clip:ViT-B-32/openai", "headless"])
def test_a_teacher_without_a_classifier_is_refused_before_any_model_is_built(labels, tmp_path, monkeypatch, teacher):
    monkeypatch.setattr(stage, "create_student", lambda *a: pytest.fail("a model was built"))
    sets = ["teacher.model_args={depth: 1, patch_size: 14, num_classes: 0}"] if teacher == "headless" else \
        [f"teacher.name={teacher}", "teacher.img_size=", "teacher.model_args={}"]
    with pytest.raises(EdgedistillError, match="has no classifier to fine-tune with the student"):
        stage.run(_config(labels, *sets), {}, tmp_path)


@installed
def test_a_fine_tuned_teachers_class_names_are_the_students_and_others_are_refused(labels, tmp_path):
    """A teacher from finetune-teacher knows its class names: the student records them for its `logits` (without
    step 3 too), and step 3 on a folder of other names (the same count) is refused."""
    from edgedistill.distill.finetune import FinetuneSettings
    from edgedistill.distill.finetune_teacher import distill_settings, finetune_teacher

    base = load_config(None, TWO_CLASS[:4])
    out = tmp_path / "teacher.safetensors"
    stamp = finetune_teacher(base, labels, out, FinetuneSettings(steps=1, batch_size=4, holdout=0))
    artifact = stage.run(load_config(None, TWO_CLASS + distill_settings(out, stamp)[:-1]), {}, tmp_path / "distilled")
    assert artifact.extra["classes"] == ["class_1", "class_8"] and "finetune" not in artifact.extra
    others = write_class_folders(tmp_path / "others", "train", 3, classes=(BAG, SNEAKER))
    with pytest.raises(EdgedistillError, match="fine-tuned on classes class_1, class_8, but .* holds class_7, class_8"):
        stage.run(_config(others, *distill_settings(out, stamp)[:-1]), {}, tmp_path / "build")


@installed
def test_step_3_settings_key_the_student_but_no_checkpoint(labels, tmp_path):
    plain, tuned = load_config(None, TWO_CLASS), _config(labels)
    assert stage.resume_hash(tuned) == stage.resume_hash(plain) == stage.resume_hash(_config(labels, "distill.finetune_steps=9"))
    target = load_target("x86-cpu")
    keys = [_distill_key(cfg, target, tmp_path / str(i)) for i, cfg in enumerate((plain, tuned, _config(labels, "distill.finetune_steps=9")))]
    assert len(set(keys)) == 3
    # the folder's images are keyed by content: one image more re-runs the stage
    grown = write_class_folders(tmp_path / "grown", "train", 8, classes=(TROUSER, BAG))
    assert _distill_key(_config(grown), target, tmp_path / "a") == keys[1]  # a copy elsewhere: the same images
    write_class_folders(grown, "train", 1, skip=8, classes=(TROUSER,))  # class_1/000.png rewritten with the ninth trouser
    assert _distill_key(_config(grown), target, tmp_path / "b") != keys[1]


def _distill_key(cfg, target, workdir) -> str:
    """The distill stage's key for `cfg`, as the pipeline computes it before running the stage."""
    pipe = Pipeline(cfg, target, workdir)
    captured = {}

    def run_stage(name, key, work, legacy_keys=None):
        captured[name] = key
        return []

    pipe._run_stage = run_stage
    pipe.distill()
    return captured["distill"]


@installed
def test_other_step_3_settings_fine_tune_the_kept_distilled_student_without_distilling_again(labels, tmp_path, monkeypatch):
    """A run stopped after it saved its student keeps it; other step-3 settings fine-tune BUILD/distilled again (no
    training), to the weights a run from scratch gives; other training settings distil again."""
    from edgedistill.models.student import load_student

    stage.run(_config(labels), {}, tmp_path / "build", keep_state=True)
    trained = []
    real = trainer.train
    monkeypatch.setattr(stage, "train", lambda job: trained.append(1) or real(job))
    stage.run(_config(labels), {}, tmp_path / "build", keep_state=True)
    assert trained == []  # the finished student, kept whole
    first = json.loads((tmp_path / "build" / "student" / "student.json").read_text())
    artifact = stage.run(_config(labels, "distill.finetune_steps=7"), {}, tmp_path / "build")
    assert trained == [] and artifact.extra["finetune"]["steps"] == 7
    again = json.loads((tmp_path / "build" / "student" / "student.json").read_text())
    assert again["train"] == first["train"] and (tmp_path / "build" / "student" / "train_log.csv").is_file()
    stage.run(_config(labels, "distill.finetune_steps=7"), {}, tmp_path / "scratch")  # trains, then fine-tunes
    assert trained == [1]
    kept, scratch = load_student(tmp_path / "build" / "student"), load_student(tmp_path / "scratch" / "student")
    for index in range(3):  # backbone, heads, classifier
        a, b = kept[index].state_dict(), scratch[index].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    stage.run(_config(labels, "distill.steps=3"), {}, tmp_path / "build")
    assert trained == [1, 1]  # another training: distilled again, and kept for the next step 3
    assert json.loads((tmp_path / "build" / "distilled" / "student.json").read_text())["train"]["steps"] == 3


CHILD = """
import json, os, sys
from pathlib import Path
from edgedistill.config import load_config
from edgedistill.distill import stage
artifact = stage.run(load_config(None, json.loads(sys.argv[1])), {}, Path(sys.argv[2]))
Path(sys.argv[2]).parent.joinpath(f"rank-{os.environ['RANK']}.json").write_text(json.dumps(artifact.extra))
"""


@installed
def test_under_torchrun_rank_0_fine_tunes_and_every_rank_records_it(labels, tmp_path):
    """Step 3 runs on rank 0 while the others wait; all ranks return its record, and a second try at step 3 skips
    distillation on every rank (they agree on the kept student)."""
    from .distributed_run import TINY, launch

    sets = TINY + ["teacher.model_args={depth: 1, patch_size: 14, num_classes: 2}", "distill.checkpoint_every=0",
                   f"distill.finetune_labels={labels}", "distill.finetune_steps=3"]
    for steps in (3, 4):
        run = launch(tmp_path / "child.py", CHILD, [json.dumps(sets + [f"distill.finetune_steps={steps}"]), str(tmp_path / "build")])
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
        extras = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
        assert extras[0] == extras[1] and extras[0]["finetune"]["steps"] == steps and extras[0]["classes"] == ["class_1", "class_8"]
    assert "no new distillation" in run.stderr and "distill 4/4" not in run.stderr


@installed
def test_the_kept_distilled_student_is_not_taken_once_the_images_or_resume_say_otherwise(labels, tmp_path, monkeypatch):
    """The resume hash knows a large source (over CONTENT_STAMP_BYTES) by its names only: images rewritten under the
    same names distil again, as distill.resume=false does; with neither, step 3 turned off takes the kept student."""
    import shutil

    from PIL import Image

    from edgedistill.data import source_stamp
    from edgedistill.data.sample_photos import bundled_photo_paths

    monkeypatch.setattr(source_stamp, "CONTENT_STAMP_BYTES", 0)  # every source as a large one
    images = tmp_path / "images"
    images.mkdir()
    for path in bundled_photo_paths()[:3]:
        shutil.copy(path, images / path.name)
    sets = [f"data.source={images}"]
    stage.run(_config(labels, *sets), {}, tmp_path / "build")
    trained = []
    real = trainer.train
    monkeypatch.setattr(stage, "train", lambda job: trained.append(1) or real(job))
    artifact = stage.run(load_config(None, TWO_CLASS + sets), {}, tmp_path / "build")  # step 3 off: the kept student as it is
    assert trained == [] and "finetune" not in artifact.extra
    first = next(images.iterdir())
    with Image.open(first) as img:
        Image.new(img.mode, img.size, "gray").save(first)  # other pixels under the same name
    stage.run(_config(labels, *sets), {}, tmp_path / "build")
    assert trained == [1]
    stage.run(_config(labels, *sets, "distill.resume=false"), {}, tmp_path / "build")
    assert trained == [1, 1]


@installed
def test_a_finished_student_fine_tuned_on_other_labels_is_not_kept(labels, tmp_path, capsys):
    """A run stopped between writing its student and recording it keeps that student only for the same labelled images."""
    import shutil

    folder = tmp_path / "labels"
    shutil.copytree(labels, folder)
    stage.run(_config(folder), {}, tmp_path / "build", keep_state=True)
    ones, eights = folder / "class_1", folder / "class_8"
    ones.rename(tmp_path / "swap")
    eights.rename(ones)
    (tmp_path / "swap").rename(eights)  # every label flipped, every name and size as it was
    capsys.readouterr()
    stage.run(_config(folder), {}, tmp_path / "build", keep_state=True)
    said = capsys.readouterr().err
    assert "keeping" not in said and "taking the student kept in" in said  # fine-tuned again, not distilled again


def test_step_3_warms_up_on_its_own_schedule_not_distillations():
    from edgedistill.distill.finetune import FinetuneSettings
    from edgedistill.distill.finetune_student import settings_of

    settings = settings_of(load_config(None, ["distill.warmup_steps=2000", "distill.steps=100000", "distill.finetune_steps=300"]))
    assert settings.warmup_steps == FinetuneSettings().warmup_steps == 20


@installed
def test_a_forced_distill_stage_distils_again_rather_than_taking_the_kept_student(labels, tmp_path, monkeypatch):
    trained = []
    real = trainer.train
    monkeypatch.setattr(stage, "train", lambda job: trained.append(1) or real(job))
    target = load_target("x86-cpu")
    Pipeline(_config(labels), target, tmp_path / "build").distill()
    Pipeline(_config(labels), target, tmp_path / "build", force=True).distill()
    assert trained == [1, 1]
