"""DIME-FM (distill/vl.py): the similarity KL against hand-computed cases, the text embeddings file, the
de-standardisation the loss reads through, and a distillation run and a cached step with the terms on."""

import csv
import dataclasses
import json
import math

import pytest
import torch
from torch.utils.data import default_collate

from edgedistill.config import load_config
from edgedistill.distill import cache as cache_mod
from edgedistill.distill import stage
from edgedistill.teacher_identity import teacher_identity
from edgedistill.distill.phi_s import PhiSNorm
from edgedistill.distill.standardize import TargetNorm
from edgedistill.distill.text_embeddings import TextEmbeddingsWriter, make_stamp, open_text_embeddings, read_stamp
from edgedistill.distill.trainer import autocast_for, objective_for, step_loss
from edgedistill.distill.vl import VLTexts, dime_fm_losses, similarity_kl
from edgedistill.errors import EdgedistillError
from edgedistill.models.heads import projection_head
from edgedistill.models.teacher import teacher_configs

TINY = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
    "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
    "data.max_images=3", "distill.batch_size=4", "distill.steps=2", "distill.warmup_steps=1", "distill.tensorboard=false",
    "distill.device=cpu",
]


def write_texts(path, cfg, rows: torch.Tensor, logit_scale: float = 10.0, sha: str = "a" * 64):
    stamp = make_stamp(teacher_identity(teacher_configs(cfg.teacher)[0]), logit_scale, sha, rows.shape[0], rows.shape[1])
    writer = TextEmbeddingsWriter(path, stamp)
    writer.add(rows)
    writer.close()
    return path


@pytest.fixture
def texts(tmp_path):
    cfg = load_config(None, TINY)
    return write_texts(tmp_path / "texts.safetensors", cfg, torch.randn(40, 192, generator=torch.Generator().manual_seed(0)))


def test_similarity_kl_hand_case():
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    # rows: [3/4, 1/4] against a uniform student, then 0; columns: the same for column 0, then 0; each direction a mean of 2
    one = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert similarity_kl(torch.zeros(2, 2), teacher).item() == pytest.approx(one / 2 + one / 2, rel=1e-6)
    assert similarity_kl(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_dime_fm_losses_hand_case():
    texts = torch.eye(2)
    teacher, student = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]])  # the student is normalised first
    vl, pvl = dime_fm_losses(student, teacher, texts, temperature=1.0)
    # image->text: KL(softmax[1, 0] ‖ softmax[0, 1]) = (e-1)/(e+1); text->image and pseudo-VL are over one image: 0
    assert vl.item() == pytest.approx(math.tanh(0.5), rel=1e-6)
    assert pvl.item() == pytest.approx(0.0, abs=1e-7)
    same_vl, same_pvl = dime_fm_losses(3 * teacher, teacher, texts, temperature=0.01)
    assert same_vl.item() == pytest.approx(0.0, abs=1e-6) and same_pvl.item() == pytest.approx(0.0, abs=1e-6)


def test_pseudo_vl_compares_image_to_image_similarities():
    generator = torch.Generator().manual_seed(1)
    teacher, student = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator, requires_grad=True)
    _, pvl = dime_fm_losses(student, teacher, torch.eye(4), temperature=0.5)
    s, t = torch.nn.functional.normalize(student, dim=-1), torch.nn.functional.normalize(teacher, dim=-1)
    assert pvl.item() == pytest.approx(similarity_kl(s @ t.T / 0.5, t @ t.T / 0.5).item(), rel=1e-6)
    pvl.backward()
    assert student.grad.abs().sum() > 0  # the teacher side is a constant


@pytest.mark.parametrize("norm", [TargetNorm(6), PhiSNorm(6, estimate_batches=2)])
def test_inverse_undoes_standardisation_as_the_folded_head_does(norm):
    generator = torch.Generator().manual_seed(2)
    for _ in range(2):
        norm.update(torch.randn(64, 6, generator=generator) * torch.arange(1, 7) + 3)
    x = torch.randn(5, 6, generator=generator)
    assert torch.allclose(norm.inverse(norm(x)), x, atol=1e-4)
    head = projection_head(4, 6)
    features = torch.randn(5, 4, generator=generator)
    expected = norm.inverse(head(features)).detach()
    norm.fold_into_head(head)
    assert torch.allclose(head(features), expected, atol=1e-4)


def test_texts_are_all_or_a_fixed_draw_per_step(texts, tmp_path):
    cfg = load_config(None, TINY)
    embeddings = open_text_embeddings(str(texts), teacher_identity(teacher_configs(cfg.teacher)[0]), 192)
    assert embeddings.temperature == pytest.approx(0.1)
    rows = embeddings.take(None, torch.device("cpu"))
    assert rows.shape == (40, 192) and torch.allclose(rows.norm(dim=-1), torch.ones(40), atol=2e-3)
    whole = VLTexts(embeddings, 64, 0.0, seed=0).to(torch.device("cpu"))
    assert torch.equal(whole.for_step(0, 0), rows) and whole.temperature == pytest.approx(0.1)
    drawn = VLTexts(embeddings, 8, 0.05, seed=0).to(torch.device("cpu"))
    assert drawn.temperature == 0.05 and drawn.for_step(3, 0).shape == (8, 192)
    assert torch.equal(drawn.for_step(3, 0), drawn.for_step(3, 0))  # a resumed run draws the same
    assert not torch.equal(drawn.for_step(3, 0), drawn.for_step(4, 0)) and not torch.equal(drawn.for_step(3, 0), drawn.for_step(3, 1))
    last = VLTexts(embeddings, 8, 0.0, seed=0, steps=5).to(torch.device("cpu"))
    assert torch.equal(last.for_step(3, 0), drawn.for_step(3, 0)) and list(last._ahead) == [(4, 0)]  # step 4's draw is read ahead
    assert torch.equal(last.for_step(4, 0), drawn.for_step(4, 0)) and last._ahead == {}  # after the last step, none


def test_a_run_logs_and_records_the_terms_and_learns_them(texts, tmp_path):
    overrides = TINY + [f"distill.text_embeddings={texts}", "distill.log_every=1", "distill.vl_texts=16"]
    artifact = stage.run(load_config(None, overrides), {}, tmp_path)
    rows = list(csv.DictReader((tmp_path / "student" / "train_log.csv").open()))
    assert {"t0.vl", "t0.pvl", "t0.token"} <= set(rows[0]) and all(float(r["t0.vl"]) > 0 for r in rows)
    record = artifact.extra["train"]["dime_fm"]
    assert record == {"sentences": 40, "sentences_sha256": "a" * 64, "texts_per_step": 16, "temperature": pytest.approx(0.1)}
    assert json.loads((tmp_path / "student" / "student.json").read_text())["train"]["dime_fm"]["sentences"] == 40

    # the terms alone, on one batch: ten AdamW steps lower them (the gradient reaches the student through them)
    prepared = stage.prepare(load_config(None, overrides + ["distill.token_weight=0", "distill.patch_weight=0", "distill.feature_weight=0"]), None)
    job = prepared.job
    losses, parts = ten_steps_on_one_batch(job, objective_for(job.cfg, job.patch_level, dime_fm=True))
    assert parts["t0.token"].item() > 0 and losses[-1] < 0.8 * losses[0]


def ten_steps_on_one_batch(job, objective) -> tuple[list[float], dict]:
    """Ten AdamW steps of `job`'s step_loss on one fixed batch of three views: each step's total loss, and the last parts."""
    for part in (job.targets, job.vl, job.logits):
        if part is not None:
            part.to(job.device)
    batch = default_collate([job.dataset[(i, 0)] for i in range(3)])
    optimizer = torch.optim.AdamW(job.module.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss, parts = step_loss(job.module, job, batch, 0, autocast_for(job.cfg, job.device), objective)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses, parts


def online_and_cached_parts(overrides: list, cache_root) -> tuple[dict, dict]:
    """One step's loss parts with the teachers online and from a float32 teacher cache of the same views,
    computed by the same module (token terms included)."""
    cfg = load_config(None, overrides)
    cache_dir = cache_mod.cache_teacher(cfg, cache_root, augmentations=1, shard_size=4, dtype="float32")
    online = stage.prepare(cfg, None).job
    cached = stage.prepare(load_config(None, overrides + [f"distill.cache={cache_dir}"]), None).job
    cached_batch = default_collate([cached.dataset[(j, 0)] for j in range(3)])
    online_batch = default_collate([online.dataset[(int(cached.dataset.index[j]), int(cached.dataset.seed[j]))] for j in range(3)])
    online.module.eval()
    for job in (online, cached):
        for part in (job.targets, job.vl, job.logits):
            if part is not None:
                part.to(torch.device("cpu"))
    objective = objective_for(cfg.distill, True, dime_fm=online.vl is not None)
    autocast = autocast_for(cfg.distill, torch.device("cpu"))
    _, parts_online = step_loss(online.module, online, online_batch, 1, autocast, objective)
    _, parts_cached = step_loss(online.module, cached, cached_batch, 1, autocast, objective)
    return parts_online, parts_cached


def test_cached_step_gives_the_online_terms(texts, tmp_path):
    online, cached = online_and_cached_parts(TINY + [f"distill.text_embeddings={texts}", "distill.standardize=running"], tmp_path / "cache")
    for key in ("t0.vl", "t0.pvl"):
        assert cached[key].item() == pytest.approx(online[key].item(), rel=1e-5), key


def test_the_terms_read_the_teacher_and_the_prediction_unstandardised(texts):
    """Both token terms (DIME-FM's and the task outputs') get the raw teacher embedding and the norm's inverse."""
    cfg = load_config(None, TINY + [f"distill.text_embeddings={texts}", "distill.standardize=running", "distill.logit_weight=1"])
    job = stage.prepare(cfg, None).job
    job.targets.to(job.device)
    job.vl.to(job.device)
    job.logits.to(job.device)
    batch = default_collate([job.dataset[(i, 0)] for i in range(3)])
    seen = {}
    vl_batch, logits_batch = job.vl.batch, job.logits.batch
    job.vl.batch = lambda token, step, rank, undo: seen.update(vl=(token.clone(), undo)) or vl_batch(token, step, rank, undo)
    job.logits.batch = lambda token, undo: seen.update(logits=(token.clone(), undo)) or logits_batch(token, undo)
    for _ in range(2):  # the second step standardises with statistics the first one moved
        _, parts = step_loss(job.module, job, batch, 0, autocast_for(cfg.distill, job.device), objective_for(cfg.distill, True, dime_fm=True))
    assert {"t0.vl", "t0.pvl", "t0.logits"} <= set(parts)
    from edgedistill.data.augment import unit_interval

    raw = job.targets(batch, unit_interval(batch["view"]))[0].token
    standardised = job.norms([dataclasses.replace(job.targets(batch, unit_interval(batch["view"]))[0])])[0].token
    for term in ("vl", "logits"):
        token, undo = seen[term]
        assert torch.allclose(token, raw), term
        assert torch.allclose(undo(standardised), raw, atol=1e-4), term


def test_a_bf16_teacher_takes_embeddings_made_beside_an_fp32_one(texts):
    """teacher.dtype is how the image teacher is held while distilling; the text rows do not depend on it."""
    cfg = load_config(None, TINY + [f"distill.text_embeddings={texts}", "teacher.dtype=bf16", "distill.amp=bf16"])
    assert stage.prepare(cfg, None).job.vl is not None


def test_no_file_is_opened_when_dime_fm_is_off(tmp_path):
    cfg = load_config(None, TINY + [f"distill.text_embeddings={tmp_path / 'absent.safetensors'}", "distill.vl_weight=0", "distill.pvl_weight=0"])
    assert stage.prepare(cfg, None).job.vl is None


def test_embeddings_of_another_teacher_or_width_are_refused_before_training(tmp_path, monkeypatch):
    other = load_config(None, TINY + ["teacher.model_args={depth: 2, patch_size: 14}"])
    wrong_teacher = write_texts(tmp_path / "other.safetensors", other, torch.randn(4, 192))
    wrong_width = write_texts(tmp_path / "width.safetensors", load_config(None, TINY), torch.randn(4, 64))

    def no_student(*args, **kwargs):
        raise AssertionError("a model was built before the text embeddings were checked")

    with monkeypatch.context() as patch:
        patch.setattr(stage, "create_student", no_student)
        with pytest.raises(EdgedistillError, match="was made by teacher 'vit_tiny_patch16_224' \\(differing in model_args\\)"):
            stage.prepare(load_config(None, TINY + [f"distill.text_embeddings={wrong_teacher}"]), None)
        with pytest.raises(EdgedistillError, match="does not exist") as info:
            stage.prepare(load_config(None, TINY + [f"distill.text_embeddings={tmp_path / 'missing.safetensors'}"]), None)
        assert "edgedistill embed-text" in info.value.fix
        (tmp_path / "foreign.safetensors").write_bytes(b"not embeddings")
        with pytest.raises(EdgedistillError, match="holds no text embeddings"):
            stage.prepare(load_config(None, TINY + [f"distill.text_embeddings={tmp_path / 'foreign.safetensors'}"]), None)
    with pytest.raises(EdgedistillError, match="holds 64-d rows, the teacher's embedding is 192-d"):
        stage.prepare(load_config(None, TINY + [f"distill.text_embeddings={wrong_width}"]), None)


def test_a_file_cut_short_is_refused(texts, tmp_path):
    data = texts.read_bytes()
    short = tmp_path / "short.safetensors"
    short.write_bytes(data[:-10])
    assert read_stamp(short)["count"] == 40  # the header alone reads
    with pytest.raises(EdgedistillError, match="cut short"):
        open_text_embeddings(str(short), read_stamp(short)["teacher"], 192)


def test_config_accepts_dime_fm_alone_and_checks_its_numbers(texts):
    load_config(None, TINY + [f"distill.text_embeddings={texts}", "distill.token_weight=0", "distill.patch_weight=0", "distill.feature_weight=0"])
    with pytest.raises(EdgedistillError, match="would learn nothing"):
        load_config(None, TINY + ["distill.token_weight=0", "distill.patch_weight=0", "distill.feature_weight=0"])
    with pytest.raises(EdgedistillError, match="distill.vl_texts"):
        load_config(None, TINY + ["distill.vl_texts=0"])


def test_resume_and_stage_keys_follow_the_file_stamp_not_its_path(texts, tmp_path, monkeypatch):
    from edgedistill.pipeline import Pipeline
    from edgedistill.targets import load_target

    cfg = load_config(None, TINY)
    moved = tmp_path / "moved" / "texts.safetensors"
    moved.parent.mkdir()
    moved.write_bytes(texts.read_bytes())
    resampled = write_texts(tmp_path / "resampled.safetensors", cfg, torch.randn(40, 192), sha="b" * 64)
    seen = []
    monkeypatch.setattr(Pipeline, "_run_stage", lambda self, name, key, work, legacy_keys=None: seen.append(key) or [])

    def keys_with(*overrides):  # (the resume hash, the distill stage's key)
        c = load_config(None, TINY + list(overrides))
        Pipeline(c, load_target("x86-cpu"), tmp_path / "build").distill()
        return stage.resume_hash(c, "images"), seen[-1]

    def keys(path):
        return keys_with(*([f"distill.text_embeddings={path}"] if path else []))

    plain, here, there, other = keys(None), keys(texts), keys(moved), keys(resampled)
    assert here == there  # the same file at another path: the job resumes and the stage stands
    assert len({plain, here, other}) == 3

    # settings that do nothing as the others stand change no key; once they act, they do
    assert keys_with("distill.vl_weight=0.3", "distill.vl_texts=8", "distill.logit_temperature=4") == plain
    assert keys_with(f"distill.text_embeddings={resampled}", "distill.vl_weight=0", "distill.pvl_weight=0") == plain
    assert keys_with(f"distill.text_embeddings={texts}", "distill.vl_weight=0.3") != here
    assert keys_with("distill.logit_weight=1", "distill.logit_temperature=4") != keys_with("distill.logit_weight=1")


def _with_header(path, stamp: dict, dtype: str = "F16", shape=None, rows: int = 2, dim: int = 4):
    """A safetensors file whose header says what the test wants, whatever its stamp holds."""
    import struct

    header = {"embeddings": {"dtype": dtype, "shape": shape or [rows, dim], "data_offsets": [0, rows * dim * 2]},
              "__metadata__": {"edgedistill": json.dumps(stamp)}}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(rows * dim * 2))
    return path


@pytest.mark.parametrize("damage", ["no teacher", "count as text", "logit scale 0", "float32 header", "other shape", "metadata not text"])
def test_a_malformed_stamp_or_header_reads_as_no_embeddings(tmp_path, damage):
    good = make_stamp({"name": "t"}, 10.0, "a" * 64, 2, 4)
    stamp = {"no teacher": {k: v for k, v in good.items() if k != "teacher"}, "count as text": {**good, "count": "2"},
             "logit scale 0": {**good, "logit_scale": 0}}.get(damage, good)
    path = _with_header(tmp_path / "x.safetensors", stamp, dtype="F32" if damage == "float32 header" else "F16",
                        shape=[4, 2] if damage == "other shape" else None)
    if damage == "metadata not text":
        raw = json.dumps({"embeddings": {"dtype": "F16", "shape": [2, 4], "data_offsets": [0, 16]}, "__metadata__": {"edgedistill": good}}).encode()
        import struct
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(16))
    assert read_stamp(_with_header(tmp_path / "good.safetensors", good)) == good
    assert read_stamp(path) == {}
    with pytest.raises(EdgedistillError, match="holds no text embeddings edgedistill can read"):
        open_text_embeddings(str(path), {"name": "t"}, 4)


def test_the_same_teacher_checkpoint_elsewhere_or_absent_behind_a_cache_is_the_same_teacher(tmp_path):
    import shutil

    import timm
    from safetensors.torch import save_file

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=28, depth=1, patch_size=14)
    (tmp_path / "a").mkdir()
    save_file(model.state_dict(), str(tmp_path / "a" / "teacher.safetensors"))
    moved = tmp_path / "b" / "teacher.safetensors"
    moved.parent.mkdir()
    shutil.copy(tmp_path / "a" / "teacher.safetensors", moved)
    made_with = load_config(None, TINY + [f"teacher.checkpoint={tmp_path / 'a' / 'teacher.safetensors'}"])
    texts = write_texts(tmp_path / "texts.safetensors", made_with, torch.randn(8, 192))
    cached = cache_mod.cache_teacher(made_with, tmp_path / "cache", augmentations=1, shard_size=4)
    (tmp_path / "a" / "teacher.safetensors").unlink()  # training from the cache needs no teacher file here
    for where in (f"teacher.checkpoint={moved}", f"distill.cache={cached}"):
        overrides = TINY + [f"teacher.checkpoint={tmp_path / 'a' / 'teacher.safetensors'}", where, f"distill.text_embeddings={texts}"]
        assert stage.prepare(load_config(None, overrides), None).job.vl is not None, where
    other = tmp_path / "other.safetensors"
    save_file({k: v + 1 for k, v in model.state_dict().items()}, str(other))
    with pytest.raises(EdgedistillError, match="differing in checkpoint_sha256"):
        stage.prepare(load_config(None, TINY + [f"teacher.checkpoint={other}", f"distill.text_embeddings={texts}"]), None)


def test_a_disk_too_small_is_said_before_any_row_is_written(tmp_path, monkeypatch):
    import errno
    import os

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(EdgedistillError, match=r"the text embeddings need 0\.00 GB and the disk holding .* has less free"):
        TextEmbeddingsWriter(tmp_path / "t.safetensors", make_stamp({"name": "t"}, 10.0, "a" * 64, 2, 4))


def test_the_terms_are_float32_under_bf16_autocast():
    from edgedistill.distill.logit_kd import TeacherLogits
    from edgedistill.distill.vl import VLBatch, unchanged

    generator = torch.Generator().manual_seed(3)
    teacher, student = torch.randn(16, 64, generator=generator), torch.randn(16, 64, generator=generator)
    texts = torch.nn.functional.normalize(torch.randn(128, 64, generator=generator), dim=-1)
    terms = [VLBatch(teacher, texts, 0.01, unchanged), TeacherLogits(torch.nn.Linear(64, 10), 1.0).batch(teacher, unchanged)]
    exact = [t.losses(student) for t in terms]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = [t.losses(student) for t in terms]
    for plain, autocast in zip(exact, under_autocast):
        for name in plain:
            assert autocast[name].dtype == torch.float32 and autocast[name].item() == pytest.approx(plain[name].item(), rel=1e-6), name
