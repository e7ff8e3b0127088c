"""The distill stage end to end on tiny models: several teachers, a CNN-like student, and a
student.safetensors that plain timm loads."""

import json
import math

import pytest
import timm
import torch
from safetensors.torch import load_file

from edgedistill.config import load_config
from edgedistill.distill import stage
from edgedistill.distill.phi_s import PhiSNorm
from edgedistill.models.deploy import load_deploy_model

BASE = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14, reg_tokens: 1}",
    "data.max_images=4", "distill.batch_size=2", "distill.steps=2", "distill.warmup_steps=1", "distill.tensorboard=false", "distill.log_every=1",
]


def test_two_teachers_vit_student_with_registers_loads_in_plain_timm(tmp_path):
    cfg = load_config(None, BASE + [
        "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1, reg_tokens: 2}",
        "teacher.extra=[{name: resnet10t, pretrained: false, img_size: 32, weight: 0.25}]", "distill.standardize=running",
    ])
    artifact = stage.run(cfg, {}, tmp_path)
    student = tmp_path / "student"
    spec = json.loads((student / "student.json").read_text())
    assert spec["extra_teachers"][0]["name"] == "resnet10t" and spec["extra_teachers"][0]["weight"] == 0.25
    assert artifact.extra["train"]["patch_level"] is True and spec["train"]["standardize"] == "running"
    heads = load_file(str(student / "heads.safetensors"))
    assert any(k.startswith("extra_heads.0.token.") for k in heads) and "heads.mask_token" in heads
    log = (student / "train_log.csv").read_text().splitlines()
    assert "t1.feature" in log[0] and len(log) == 3
    plain = timm.create_model(spec["architecture"], pretrained=True, pretrained_cfg_overlay={"file": str(student / "student.safetensors"), "custom_load": False},
                              num_classes=0, img_size=spec["img_size"], **spec["model_args"]).eval()
    deploy, _ = load_deploy_model(student)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(plain.forward_features(x), deploy.backbone.forward_features(x), atol=1e-6)
    embedding, logits = deploy(x)
    assert embedding.shape == (1, 192) and logits.shape == (1, 1000)


def test_cnn_like_student_turns_the_patch_level_off(tmp_path, capsys):
    cfg = load_config(None, BASE + ["student.name=repvit_m0_9", "student.img_size=64", "distill.channels_last=true"])
    artifact = stage.run(cfg, {}, tmp_path)
    assert artifact.extra["train"]["patch_level"] is False
    assert "masked patch distillation is off" in " ".join(capsys.readouterr().err.split())
    deploy, spec = load_deploy_model(tmp_path / "student")
    assert spec["summary_dim"] == 384
    assert deploy(torch.randn(1, 3, 64, 64))[0].shape == (1, 192)



def test_none_builds_no_norms_and_the_default_one_phi_s_set_per_teacher(tmp_path):
    student = ["student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}"]
    off = stage.prepare(load_config(None, BASE + student + ["distill.standardize=none"]), None)
    assert off.job.norms is None
    on = stage.prepare(load_config(None, BASE + student + ["teacher.extra=[{name: resnet10t, pretrained: false, img_size: 32}]"]), None)
    assert [type(n.token) for n in on.job.norms.norms] == [PhiSNorm, PhiSNorm]


VIT_STUDENT = ["student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}"]


def test_log_rows_carry_the_learning_rate_their_step_used(tmp_path):
    stage.run(load_config(None, BASE + VIT_STUDENT + ["distill.lr=0.001"]), {}, tmp_path)
    rows = [line.split(",") for line in (tmp_path / "student" / "train_log.csv").read_text().splitlines()]
    lr = [float(row[rows[0].index("lr")]) for row in rows[1:]]
    assert lr[0] == pytest.approx(1e-5)  # step 1 trained at the warm-up start, lr * 0.01
    assert lr[1] == pytest.approx(1e-5 + 0.5 * (0.001 - 1e-5))  # step 2: the cosine half-way (t=1 of 2), not the next step's


def test_a_diverged_run_stops_with_a_fix_and_keeps_no_nan_checkpoint(tmp_path, monkeypatch):
    from edgedistill.distill import trainer
    from edgedistill.errors import EdgedistillError

    real = trainer.step_loss

    def diverging(model, job, batch, step, autocast, objective):
        loss, parts = real(model, job, batch, step, autocast, objective)
        return (loss * float("nan") if step >= 2 else loss), parts

    monkeypatch.setattr(trainer, "step_loss", diverging)
    cfg = load_config(None, BASE + VIT_STUDENT + ["distill.steps=6", "distill.checkpoint_every=2", "distill.log_every=10"])
    with pytest.raises(EdgedistillError, match="diverged: the loss is nan by step 4") as error:
        stage.run(cfg, {}, tmp_path)
    assert "distill.lr" in error.value.fix
    checkpoint = torch.load(tmp_path / "distill_state" / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 2 and not (tmp_path / "student").exists()  # the last good state is kept


def test_a_logged_row_is_the_mean_of_the_steps_since_the_last_one(tmp_path, monkeypatch):
    from edgedistill.distill import trainer

    real, seen = trainer.step_loss, []

    def recording(model, job, batch, step, autocast, objective):
        loss, parts = real(model, job, batch, step, autocast, objective)
        seen.append((loss.item(), parts["t0.token"].item()))
        return loss, parts

    monkeypatch.setattr(trainer, "step_loss", recording)
    stage.run(load_config(None, BASE + VIT_STUDENT + ["distill.steps=4", "distill.log_every=2"]), {}, tmp_path)
    header, *rows = [line.split(",") for line in (tmp_path / "student" / "train_log.csv").read_text().splitlines()]
    assert [row[0] for row in rows] == ["2", "4"]
    for row, pair in zip(rows, (seen[:2], seen[2:])):  # not the last step's value alone
        assert float(row[header.index("loss")]) == pytest.approx(sum(s[0] for s in pair) / 2, rel=1e-5)
        assert float(row[header.index("t0.token")]) == pytest.approx(sum(s[1] for s in pair) / 2, rel=1e-5)


def test_resuming_with_other_arithmetic_warns_that_it_is_not_bit_exact(tmp_path, caplog):
    import logging

    cfg = load_config(None, BASE + VIT_STUDENT + ["distill.steps=4", "distill.checkpoint_every=2"])

    def stop(step):
        if step == 3:
            raise KeyboardInterrupt  # pre-empted after the step-2 checkpoint

    with pytest.raises(KeyboardInterrupt):
        stage.run(cfg, {}, tmp_path, on_step=stop)
    path = tmp_path / "distill_state" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["arithmetic"] == {"device": "cpu", "bf16": False, "compile": False}
    checkpoint["arithmetic"] = {"device": "cuda", "bf16": True, "compile": False}  # as if written on a GPU
    torch.save(checkpoint, path)
    with caplog.at_level(logging.WARNING):
        artifact = stage.run(cfg, {}, tmp_path)
    assert artifact.extra["train"]["resumed_from_step"] == 2
    assert "not bit-exact" in caplog.text and "'device': 'cuda'" in caplog.text


def test_a_failed_run_destroys_the_process_group_it_created(tmp_path, monkeypatch):
    import torch.distributed as dist

    from edgedistill.distill import distributed

    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.FileStore(str(tmp_path / "store"), 1))
    try:
        monkeypatch.setattr(distributed, "init", lambda kind: distributed.DistContext(0, 2, 0, owns_group=True))

        def broken(*args, **kwargs):
            raise RuntimeError("data source vanished")

        monkeypatch.setattr(stage, "prepare", broken)
        with pytest.raises(RuntimeError, match="vanished"):
            stage.run(load_config(None, []), {}, tmp_path / "build")
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_bf16_teacher_distils_under_bf16_autocast_and_keeps_its_classifier_fp32(tmp_path, monkeypatch):
    from edgedistill.models import teacher as teacher_module

    held = []
    real = teacher_module.hold_for_distillation

    def spy(teachers, configs, bf16_autocast):
        real(teachers, configs, bf16_autocast)
        held.extend(teachers)

    monkeypatch.setattr(stage, "hold_for_distillation", spy)
    cfg = load_config(None, BASE + ["student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
                                    "teacher.dtype=bf16", "distill.amp=bf16", "distill.device=cpu"])
    artifact = stage.run(cfg, {}, tmp_path / "build")
    assert next(held[0].model.parameters()).dtype == torch.bfloat16
    assert held[0].classifier.weight.dtype == torch.float32  # saved beside the student
    assert all(v.dtype == torch.float32 for v in load_file(str(tmp_path / "build" / "student" / "student.safetensors")).values())
    assert math.isfinite(artifact.extra["train"]["loss_last"])


def test_a_bf16_teacher_without_bf16_autocast_is_refused_before_training(tmp_path):
    from edgedistill.errors import EdgedistillError

    cfg = load_config(None, BASE + ["student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
                                    "teacher.dtype=bf16", "distill.amp=fp32"])
    with pytest.raises(EdgedistillError, match="needs bf16 autocast") as caught:
        stage.run(cfg, {}, tmp_path / "build")
    assert "distill.amp=bf16" in caught.value.fix and not (tmp_path / "build" / "student").exists()
    with pytest.raises(EdgedistillError, match="teacher.dtype"):
        load_config(None, ["teacher.dtype=fp16"])


def test_compile_mode_reaches_torch_compile_for_student_and_teacher(tmp_path, monkeypatch):
    """distill.compile_mode is passed to every torch.compile the stage makes (recorded, not compiled:
    the GPU tests compile for real)."""
    modes = []

    def record(fn, *args, mode=None, **kwargs):
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", record)
    compiled = BASE + ["student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}", "distill.compile=true"]
    stage.run(load_config(None, compiled + ["distill.compile_mode=max-autotune-no-cudagraphs"]), {}, tmp_path)
    assert modes == ["max-autotune-no-cudagraphs"] * 2  # the student step, then the teacher's forward

    # the teacher never replays CUDA graphs: their outputs are freed when the next compiled call (the student
    # step) starts, and a teacher one batch ahead would overwrite the targets still in use
    for mode, teacher_mode in (("max-autotune", "max-autotune-no-cudagraphs"), ("reduce-overhead", "default")):
        for ahead in (False, True):
            modes.clear()
            stage.run(load_config(None, compiled + [f"distill.compile_mode={mode}", f"distill.overlap_teacher={ahead}"]), {},
                      tmp_path / f"{mode}-{ahead}")
            assert modes == [mode, teacher_mode]


def test_overlapping_the_teacher_trains_the_same_weights(tmp_path):
    """distill.overlap_teacher runs each batch's teacher one step early (a side stream on CUDA); the
    batches must still meet their own targets, so the weights match a plain run's exactly."""
    student = ["student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}", "distill.steps=3"]
    weights = {}
    for overlap in ("false", "true"):
        stage.run(load_config(None, BASE + student + [f"distill.overlap_teacher={overlap}"]), {}, tmp_path / overlap)
        weights[overlap] = load_file(str(tmp_path / overlap / "student" / "student.safetensors"))
    assert weights["true"].keys() == weights["false"].keys()
    assert all(torch.equal(weights["true"][k], weights["false"][k]) for k in weights["true"])
