"""`edgedistill zero-shot-head` (distill/zero_shot_head.py): an open_clip teacher's text tower turns class names into
CLIP's zero-shot classifier. One real run with a random-weight ViT-B-32 (no download); its rows are checked against the
text tower run here by hand, CLIP's way."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.distill.zero_shot_head import FORMAT, build_zero_shot_head, default_templates, prompt_name, read_stamp
from edgedistill.errors import EdgedistillError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="needs the [vl] extra (open_clip_torch)")

RANDOM_CLIP = ["teacher.name=open_clip:ViT-B-32", "teacher.pretrained=false", "distill.device=cpu"]
TEMPLATES = ("a photo of a {}.", "a blurry drawing of the {}")


def test_the_rows_are_each_class_prompts_embedded_averaged_and_normalised(tmp_path, capsys):
    from safetensors.numpy import load_file

    from edgedistill.distill.embed_text import build_text_tower
    from edgedistill.models.teacher import teacher_configs

    folder = tmp_path / "val"
    for name in ("n01440764", "golden_retriever", ".hidden"):
        (folder / name).mkdir(parents=True)
    out = tmp_path / "head.safetensors"
    assert main(["zero-shot-head", str(folder), str(out), *[a for t in TEMPLATES for a in ("--template", t)],
                 *[a for s in RANDOM_CLIP for a in ("--set", s)]]) == 0
    err = capsys.readouterr().err
    assert f"wrote zero-shot head (2 classes x 2 prompts, 512-d, teacher open_clip:ViT-B-32) -> {out}" in err
    assert f"--set bench.zero_shot_head={out} (and --set bench.eval_dir={folder} for zero-shot top-1)" in err

    stamp = read_stamp(out)
    assert stamp["format"] == FORMAT and stamp["classes"] == ["golden_retriever", "n01440764"]  # the folder's names, sorted as bench lists them
    assert stamp["prompt_names"] == ["golden retriever", "tench"] and stamp["templates"] == list(TEMPLATES)
    model, tokenizer, _ = build_text_tower(teacher_configs(load_config(None, RANDOM_CLIP).teacher)[0], torch.device("cpu"))
    with torch.no_grad():
        expected = []
        for name in ("golden retriever", "tench"):
            each = F.normalize(model.encode_text(tokenizer([t.format(name) for t in TEMPLATES])), dim=-1)
            expected.append(F.normalize(each.mean(0), dim=-1))
    rows = load_file(str(out))["weights"]
    assert rows.shape == (2, 512) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, torch.stack(expected).numpy(), atol=1e-5)
    assert np.abs(rows[0] - rows[1]).max() > 1e-2  # the two classes' prompts do differ


def test_clips_own_names_and_prompts_by_default():
    assert prompt_name("n01443537") == "goldfish" and prompt_name("n99999999") == "n99999999" and prompt_name("t_shirt") == "t shirt"
    templates = default_templates()
    assert len(templates) == 80 and templates[0] == "a bad photo of a {}." and all(t.count("{}") == 1 for t in templates)


def _refused(tmp_path, classes, out=None, templates=(), overrides=RANDOM_CLIP):
    with pytest.raises(EdgedistillError) as info:
        build_zero_shot_head(load_config(None, list(overrides)), classes, out or tmp_path / "head.safetensors", templates)
    return str(info.value)


def test_bad_input_is_refused_before_any_model_is_built(tmp_path, monkeypatch, capsys):
    from edgedistill.models import open_clip_teacher

    monkeypatch.setattr(open_clip_teacher, "create_open_clip_model", lambda *a: pytest.fail("a model was built"))
    names = tmp_path / "names.txt"
    names.write_text("\ufeffcat\ndog\tdomestic dog\n\n")
    assert "needs a teacher with a text tower" in _refused(tmp_path, names, overrides=["distill.device=cpu"])
    assert "does not exist" in _refused(tmp_path, tmp_path / "missing")
    (tmp_path / "one.txt").write_text("cat\n")
    assert "names 1 class(es)" in _refused(tmp_path, tmp_path / "one.txt")
    (tmp_path / "twice.txt").write_text("cat\ndog\ncat\n")
    assert "names cat more than once" in _refused(tmp_path, tmp_path / "twice.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\ndog\n".encode("latin-1"))
    assert "is not UTF-8" in _refused(tmp_path, tmp_path / "latin1.txt")
    for template in ("a photo of a cat", "a {} in {}", "a {} {x}", "a photo of a {{}}.", "a {"):
        assert "must hold the class name's place as {}" in _refused(tmp_path, names, templates=(template,)), template
    assert "must be a .safetensors file" in _refused(tmp_path, names, out=tmp_path / "head.pt")
    foreign = tmp_path / "model.safetensors"
    foreign.write_bytes(b"not ours")
    assert "holds no zero-shot head, so it is not replaced" in _refused(tmp_path, names, out=foreign)
    assert foreign.read_bytes() == b"not ours"
    assert not (tmp_path / "head.safetensors").exists()
    assert main(["zero-shot-head", str(tmp_path / "missing"), str(tmp_path / "head.safetensors"), *[a for s in RANDOM_CLIP for a in ("--set", s)]]) != 0
    assert f"error: classes '{tmp_path / 'missing'}' does not exist" in capsys.readouterr().err


def test_a_class_file_names_what_the_prompts_say(tmp_path):
    from edgedistill.distill.zero_shot_head import read_classes

    names = tmp_path / "names.txt"
    names.write_text("\ufeffcat\n  dog\tdomestic dog \n\nsea_lion\n")
    assert read_classes(names) == (["cat", "dog", "sea_lion"], ["cat", "domestic dog", "sea lion"])
