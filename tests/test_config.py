import pytest

from edgedistill.config import BuildConfig, load_config
from edgedistill.errors import EdgedistillError


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("distill:\n  steps: 7\nstudent:\n  model_args: {depth: 3}\n")
    cfg = load_config(path, ["distill.lr=0.01", "quantize.op_types=[MatMul]"])
    assert cfg.distill.steps == 7 and cfg.distill.lr == 0.01
    assert cfg.student.model_args == {"depth": 3}
    assert cfg.quantize.op_types == ("MatMul",)
    assert cfg.teacher == BuildConfig().teacher


@pytest.mark.parametrize("override,fragment", [
    ("distill.stepz=3", "unknown config key 'distill.stepz'"),
    ("distill.steps=abc", "must be a number"),
    ("distill.steps", "key=value"),
    ("export.simplify=3", "true or false"),
    ("distill.steps=0", "'distill.steps' is 0, which is out of range (fix: set it at least 1)"),
    ("distill.mask_share=1.5", "out of range (fix: set it in [0, 1])"),
    ("distill.ema_decay=1", "in [0, 1)"),
    ("distill.steps=2.7", "must be a whole number"),
    ("distill.device=no", "read as a boolean"),
])
def test_bad_overrides_are_clear(override, fragment):
    with pytest.raises(EdgedistillError) as info:
        load_config(None, [override])
    assert fragment in info.value.one_line()


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(EdgedistillError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill: [unclosed")
    with pytest.raises(EdgedistillError, match="not valid YAML"):
        load_config(bad)


def test_section_hash_tracks_only_named_sections():
    a, b = load_config(), load_config(None, ["bench.batch=4"])
    assert a.section_hash("distill") == b.section_hash("distill")
    assert a.section_hash("bench") != b.section_hash("bench")


def test_an_empty_string_override_is_the_empty_string():
    assert load_config(None, ["data.auto_augment="]).data.auto_augment == ""  # augmentation off, not the policy 'None'


def test_a_compatible_addition_at_its_old_behaviour_leaves_every_hash_as_it_was():
    import dataclasses
    import hashlib
    import json

    from edgedistill.config import COMPATIBLE_ADDITIONS

    cfg = load_config(None, [])
    sections = ("teacher", "student", "data", "distill")
    before = {name: dataclasses.asdict(getattr(cfg, name)) for name in sections}  # the hash before teacher.dtype existed
    del before["teacher"]["dtype"]
    assert COMPATIBLE_ADDITIONS["teacher.dtype"] == "fp32"
    assert cfg.section_hash(*sections) == hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:16]
    bf16 = load_config(None, ["teacher.dtype=bf16"])
    assert bf16.section_hash(*sections) != cfg.section_hash(*sections)  # a distilled student depends on it
    assert bf16.section_hash("teacher", ignore={"teacher.dtype"}) == cfg.section_hash("teacher")  # export's evalset does not


def test_extra_teachers_follow_the_primary_teachers_choices():
    from edgedistill.models.teacher import teacher_configs

    cfg = load_config(None, ["teacher.extra=[{name: resnet10t, dtype: fp16}]"])
    with pytest.raises(EdgedistillError, match=r"teacher.extra\[0\].dtype' is 'fp16'") as caught:
        teacher_configs(cfg.teacher)
    assert "fp32, bf16" in caught.value.fix
