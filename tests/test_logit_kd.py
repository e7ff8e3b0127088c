"""Task-output distillation (distill/logit_kd.py): the softened-KL against hand-computed cases, a run that
trains and records it, the cached step against the online one, and a teacher without a classifier refused."""

import csv
import math

import pytest
import torch

from edgedistill.config import load_config
from edgedistill.distill import stage
from edgedistill.distill.logit_kd import logit_kd_loss
from edgedistill.distill.trainer import objective_for
from edgedistill.errors import EdgedistillError

from .test_dime_fm import TINY, online_and_cached_parts, ten_steps_on_one_batch  # a random ViT-Tiny teacher: its 1000-class head is a real classifier to match

KD = TINY + ["distill.logit_weight=1", "distill.log_every=1"]


def test_logit_kd_loss_hand_cases():
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert logit_kd_loss(torch.zeros(1, 2), teacher, 1.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)
    # T=2 halves the teacher's logits: p = [√3, 1]/(√3+1) against a uniform student, then × T² = 4
    p = torch.tensor([math.sqrt(3.0), 1.0]) / (math.sqrt(3.0) + 1)
    assert logit_kd_loss(torch.zeros(1, 2), teacher, 2.0).item() == pytest.approx(4 * float((p * (2 * p).log()).sum()), rel=1e-5)
    assert logit_kd_loss(teacher + 5, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-6)  # a shift of every logit changes no class


def test_a_run_logs_and_records_the_term_and_learns_it(tmp_path):
    artifact = stage.run(load_config(None, KD + ["distill.logit_temperature=2"]), {}, tmp_path)
    rows = list(csv.DictReader((tmp_path / "student" / "train_log.csv").open()))
    assert all(float(r["t0.logits"]) > 0 for r in rows) and "t0.vl" not in rows[0]
    assert artifact.extra["train"]["logit_kd"] == {"temperature": 2.0}

    prepared = stage.prepare(load_config(None, KD + ["distill.token_weight=0", "distill.patch_weight=0", "distill.feature_weight=0"]), None)
    job = prepared.job
    assert not any(p.requires_grad for p in job.logits.classifier.parameters())  # frozen, and no part of the trained module
    assert not any(p is q for p in job.logits.classifier.parameters() for q in job.module.parameters())
    losses, parts = ten_steps_on_one_batch(job, objective_for(job.cfg, job.patch_level))
    assert set(parts) == {"t0.token", "t0.patch", "t0.feature", "t0.logits"} and losses[-1] < 0.8 * losses[0]


def test_the_term_scores_the_deployed_logits(tmp_path):
    """The term's classifier is the deployed `logits` head (so, with test_both_terms_score_the_prediction_in_the_teachers_space
    and the fold test in test_dime_fm, the loss scores what the deployed output gives)."""
    from edgedistill.models.deploy import load_deploy_model

    cfg = load_config(None, KD + ["distill.standardize=phi-s", "distill.standardize_batches=1"])
    stage.run(cfg, {}, tmp_path)
    model, spec = load_deploy_model(tmp_path / "student")
    job = stage.prepare(cfg, None).job
    x = torch.rand(2, 3, 32, 32)
    embedding, logits = model(x)
    assert torch.allclose(logits, job.logits.classifier(embedding), atol=1e-5)  # the deployed head is the teacher's classifier


def test_cached_step_gives_the_online_term(tmp_path):
    online, cached = online_and_cached_parts(KD + ["distill.standardize=running"], tmp_path / "cache")
    assert cached["t0.logits"].item() == pytest.approx(online["t0.logits"].item(), rel=1e-5)


def test_a_teacher_without_a_classifier_is_refused(tmp_path, monkeypatch):
    headless = [o for o in KD if not o.startswith("teacher.model_args")] + ["teacher.model_args={depth: 1, patch_size: 14, num_classes: 0}"]
    clip = [o for o in KD if not o.startswith("teacher.")] + ["teacher.name=open_clip:ViT-B-32", "teacher.pretrained=false"]

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before a teacher known to have no classifier was refused")

    with monkeypatch.context() as patch:
        patch.setattr(stage, "create_student", no_model)
        with pytest.raises(EdgedistillError, match="has no classifier") as info:
            stage.prepare(load_config(None, headless), None)
        assert "distill.logit_weight=0" in info.value.fix and "num_classes: N" in info.value.fix
        with pytest.raises(EdgedistillError, match="'open_clip:ViT-B-32' has no classifier") as info:
            stage.prepare(load_config(None, clip), None)
        assert "edgedistill embed-text" in info.value.fix and "model_args" not in info.value.fix  # open_clip refuses model_args
    with pytest.raises(EdgedistillError, match="distill.logit_temperature"):
        load_config(None, KD + ["distill.logit_temperature=0"])
    load_config(None, KD + ["distill.token_weight=0", "distill.patch_weight=0", "distill.feature_weight=0"])  # the term alone learns


def test_both_terms_score_the_prediction_in_the_teachers_space():
    """With a norm that moves and scales, each term equals its loss on the de-standardised prediction, not on the raw one."""
    from edgedistill.distill.logit_kd import TeacherLogits
    from edgedistill.distill.standardize import TargetNorm
    from edgedistill.distill.vl import VLBatch, dime_fm_losses

    generator = torch.Generator().manual_seed(4)
    norm = TargetNorm(8)
    norm.update(torch.randn(64, 8, generator=generator) * 3 + 2)
    teacher, pred = torch.randn(5, 8, generator=generator) * 3 + 2, torch.randn(5, 8, generator=generator)
    classifier = torch.nn.Linear(8, 6)
    logits = TeacherLogits(classifier, 2.0).batch(teacher, norm.inverse).losses(pred)["logits"]
    with torch.no_grad():
        in_space = logit_kd_loss(classifier(norm.inverse(pred)), classifier(teacher), 2.0)
        raw = logit_kd_loss(classifier(pred), classifier(teacher), 2.0)
    assert logits.item() == pytest.approx(in_space.item(), rel=1e-6) and abs(logits.item() - raw.item()) > 1e-3
    texts = torch.nn.functional.normalize(torch.randn(7, 8, generator=generator), dim=-1)
    vl = VLBatch(teacher, texts, 0.1, norm.inverse).losses(pred)
    expected, unmapped = dime_fm_losses(norm.inverse(pred), teacher, texts, 0.1), dime_fm_losses(pred, teacher, texts, 0.1)
    assert vl["vl"].item() == pytest.approx(expected[0].item(), rel=1e-6) and abs(vl["vl"].item() - unmapped[0].item()) > 1e-3
