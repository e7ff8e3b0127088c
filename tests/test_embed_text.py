"""`edgedistill embed-text` (distill/embed_text.py): an open_clip teacher's text tower embeds a sentence file once
into a text-embeddings file for DIME-FM. One real run with a random-weight ViT-B-32 (no download) is shared by the
module; the other runs reuse the model it built, so they cost no second build."""

import hashlib
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.teacher_identity import teacher_identity
from edgedistill.distill.embed_text import embed_sentences
from edgedistill.distill.text_embeddings import FORMAT, TextEmbeddingsWriter, make_stamp, open_text_embeddings, read_stamp
from edgedistill.errors import EdgedistillError
from edgedistill.models import open_clip_teacher

pytestmark = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="needs the [vl] extra (open_clip_torch)")

RANDOM_CLIP = ["teacher.name=open_clip:ViT-B-32", "teacher.pretrained=false", "distill.device=cpu"]
SENTENCES = "a photo of a cat\n\n   a dog on a beach  \n\t \nthe night sky\nune phrase en français: été"  # no final newline
KEPT = ["a photo of a cat", "a dog on a beach", "the night sky", "une phrase en français: été"]
FP16 = 5e-4  # float16 rounding of unit-vector entries (|x| < 0.2 here) is under 1e-4; other sentences' rows differ by 0.08


@dataclass
class Made:
    cfg: object
    sentences: Path
    out: Path
    stamp: dict
    model: torch.nn.Module
    arch: str


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Made:
    """A real run at batch size 3 (a full batch, then a partial one), keeping the model it built."""
    folder = tmp_path_factory.mktemp("embed_text")
    sentences, out = folder / "captions.txt", folder / "text.safetensors"
    sentences.write_text(SENTENCES, encoding="utf-8")
    real, built = open_clip_teacher.create_open_clip_model, []

    def keep(*args):
        built.append(real(*args))
        return built[-1]

    cfg = load_config(None, RANDOM_CLIP)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(open_clip_teacher, "create_open_clip_model", keep)
        stamp = embed_sentences(cfg, sentences, out, batch_size=3)
    (model, arch), = built
    return Made(cfg, sentences, out, stamp, model, arch)


@pytest.fixture
def reuse_model(made, monkeypatch):
    """Later runs get the module's model instead of building one."""
    monkeypatch.setattr(open_clip_teacher, "create_open_clip_model", lambda *args: (made.model, made.arch))


@pytest.fixture
def no_model(monkeypatch):
    """A run that must fail before any model is built fails the test loudly if it builds one."""
    def build(*args):
        raise AssertionError("a model was built before the input was checked")

    monkeypatch.setattr(open_clip_teacher, "create_open_clip_model", build)
    monkeypatch.setattr("edgedistill.models.teacher.create_teacher", build)


def rows_of(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(open_text_embeddings(str(path), read_stamp(path)["teacher"], None).rows, dtype=np.float32))


def test_rows_are_open_clips_own_unit_text_embeddings_in_file_order(made):
    import open_clip

    reference = open_clip.create_model("ViT-B-32").eval()  # its own random weights first: the comparison must tell models apart
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        other_weights = F.normalize(reference.encode_text(tokenizer(KEPT)), dim=-1)
        reference.load_state_dict(made.model.state_dict())
        expected = F.normalize(reference.encode_text(tokenizer(KEPT)), dim=-1)
    rows = rows_of(made.out)
    assert rows.shape == (4, 512)  # blank and whitespace-only lines skipped
    assert torch.allclose(rows, expected, atol=FP16)
    assert not torch.allclose(rows, other_weights, atol=FP16)
    assert not torch.allclose(rows, expected[[1, 0, 2, 3]], atol=FP16)  # in file order
    assert torch.allclose(rows.norm(dim=1), torch.ones(4), atol=1e-3)


def test_the_stamp_records_teacher_logit_scale_and_sentences(made):
    assert made.stamp == read_stamp(made.out)
    assert made.stamp["format"] == FORMAT and made.stamp["count"] == 4 and made.stamp["dim"] == 512
    assert made.stamp["teacher"] == teacher_identity(made.cfg.teacher)
    assert made.stamp["sentences_sha256"] == hashlib.sha256(made.sentences.read_bytes()).hexdigest()
    assert made.stamp["logit_scale"] == pytest.approx(float(made.model.logit_scale.detach().exp())) == pytest.approx(1 / 0.07, rel=1e-5)  # CLIP's init


def test_random_weights_are_those_of_the_image_tower_distillation_builds(made):
    """With teacher.pretrained=false the text tower must belong to the image tower the distill stage builds."""
    from edgedistill.models.teacher import create_primary_teacher

    visual = create_primary_teacher(made.cfg.teacher).model.visual.state_dict()
    built = made.model.visual.state_dict()
    assert visual.keys() == built.keys() and all(torch.equal(visual[k], built[k]) for k in visual)


def test_distillation_opens_them_for_this_teacher_only(made):
    identity = teacher_identity(made.cfg.teacher)
    assert open_text_embeddings(str(made.out), identity, 512).count == 4
    other = teacher_identity(load_config(None, ["teacher.name=open_clip:ViT-B-16", "teacher.pretrained=false"]).teacher)
    with pytest.raises(EdgedistillError, match="was made by teacher 'open_clip:ViT-B-32'"):
        open_text_embeddings(str(made.out), other, 512)
    with pytest.raises(EdgedistillError, match="holds 512-d rows, the teacher's embedding is 768-d"):
        open_text_embeddings(str(made.out), identity, 768)


def test_cli_replaces_earlier_text_embeddings_and_says_what_it_wrote(made, reuse_model, tmp_path, capsys):
    out = tmp_path / "text.safetensors"
    earlier = TextEmbeddingsWriter(out, make_stamp(teacher_identity(made.cfg.teacher), 10.0, "a" * 64, 1, 512))
    earlier.add(torch.ones(1, 512))
    earlier.close()
    extra = ["--set", "teacher.extra=[{name: efficientnet_lite0.offline}]"]
    assert main(["embed-text", str(made.sentences), str(out), "--batch-size", "2", *sum((["--set", s] for s in RANDOM_CLIP), []), *extra]) == 0
    err = " ".join(capsys.readouterr().err.split())  # the console folds long lines
    assert "teacher.extra is not used" in err
    assert f"wrote 4 text embeddings (512-d, teacher open_clip:ViT-B-32, logit scale 14.29) -> {out}" in err
    assert read_stamp(out) == made.stamp and torch.allclose(rows_of(out), rows_of(made.out), atol=FP16)  # batch size changes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.safetensors"]


def _cli(sentences: Path, out: Path, *overrides: str) -> list[str]:
    return ["embed-text", str(sentences), str(out), *sum((["--set", s] for s in overrides), [])]


def test_a_teacher_without_a_text_tower_is_refused_before_anything_is_built(no_model, tmp_path, capsys):
    sentences = tmp_path / "captions.txt"
    sentences.write_text("a cat\n")
    for overrides in ([], ["teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false"]):
        assert main(_cli(sentences, tmp_path / "text.safetensors", "distill.device=cpu", *overrides)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: DIME-FM needs a teacher with a text tower") and err.count("\n") == 1
        assert "--set teacher.name=open_clip:ViT-B-16/laion2b_s34b_b88k" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions.txt"]


@pytest.mark.parametrize("content, out_name, cause", [
    (None, "text.safetensors", "sentences file '{sentences}' does not exist"),
    (b"", "text.safetensors", "holds no sentences"),
    (b"  \n\t\n\n", "text.safetensors", "holds no sentences"),
    ("one\ntwo\ncaf\xe9\n".encode("latin-1"), "text.safetensors", "line 3 is not UTF-8 (its byte 4 is 0xe9)"),
    (b"a cat\n", "captions.txt", "is the sentences file, which it would replace"),
    (b"a cat\n", "model.safetensors", "exists and holds no text embeddings, so it is not replaced"),
    (b"a cat\n", "folder", "is a folder"),
])
def test_cli_refuses_bad_input_in_one_line_before_building_a_model(no_model, tmp_path, capsys, content, out_name, cause):
    sentences, out = tmp_path / "captions.txt", tmp_path / out_name
    if content is not None:
        sentences.write_bytes(content)
    if out_name == "model.safetensors":
        out.write_bytes(b"someone's model weights")
    if out_name == "folder":
        out.mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert main(_cli(sentences, out, *RANDOM_CLIP)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "(fix: " in err
    assert cause.format(sentences=sentences) in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # the foreign file byte for byte, nothing added


def test_a_failure_midway_leaves_no_output_and_an_earlier_one_untouched(made, reuse_model, tmp_path, monkeypatch):
    real, calls = made.model.encode_text, []

    def fails_after_one_batch(tokens):
        calls.append(len(tokens))
        if len(calls) > 1:
            raise failure
        return real(tokens)

    monkeypatch.setattr(made.model, "encode_text", fails_after_one_batch)
    out = tmp_path / "text.safetensors"
    failure = RuntimeError("out of memory")
    with pytest.raises(RuntimeError, match="out of memory"):
        embed_sentences(made.cfg, made.sentences, out, batch_size=1)
    assert calls == [1, 1] and list(tmp_path.iterdir()) == []  # nothing half-written, nor a temp file beside it
    shutil.copyfile(made.out, out)
    calls.clear()
    failure = KeyboardInterrupt()  # Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        embed_sentences(made.cfg, made.sentences, out, batch_size=1)
    assert calls == [1, 1] and [p.name for p in tmp_path.iterdir()] == ["text.safetensors"]
    assert out.read_bytes() == made.out.read_bytes()


def test_a_sentences_file_that_changes_while_embedded_is_refused(made, reuse_model, tmp_path, monkeypatch):
    from edgedistill.distill import embed_text

    sentences, out = tmp_path / "captions.txt", tmp_path / "text.safetensors"
    sentences.write_text("a cat\n")
    counted = embed_text.count_sentences

    def then_edited(path):
        found = counted(path)
        path.write_text("a cat\na dog\n")  # appended between the count and the embedding
        return found

    monkeypatch.setattr(embed_text, "count_sentences", then_edited)
    with pytest.raises(EdgedistillError, match="changed while it was being embedded"):
        embed_sentences(made.cfg, sentences, out)
    assert [p.name for p in tmp_path.iterdir()] == ["captions.txt"]


def test_the_file_feeds_distillation_with_the_same_teacher(made, tmp_path):
    """End to end: what embed-text wrote is accepted by a distillation run with that open_clip teacher (its
    image embedding is the 512-d space the text rows live in), and the DIME-FM terms are trained and logged."""
    import csv

    from edgedistill.distill import stage

    overrides = RANDOM_CLIP + ["student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
                               "data.max_images=2", "distill.batch_size=2", "distill.steps=1", "distill.warmup_steps=0",
                               "distill.tensorboard=false", "distill.log_every=1", f"distill.text_embeddings={made.out}"]
    artifact = stage.run(load_config(None, overrides), {}, tmp_path)
    row, = csv.DictReader((tmp_path / "student" / "train_log.csv").open())
    assert float(row["t0.vl"]) > 0 and float(row["t0.pvl"]) >= 0
    assert artifact.extra["train"]["dime_fm"]["sentences"] == len(KEPT)
    assert artifact.extra["train"]["dime_fm"]["temperature"] == pytest.approx(1 / made.stamp["logit_scale"])
