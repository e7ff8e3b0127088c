"""Inputs a user can give that used to be read as something else: empty calibration settings, YAML 1.1
integers in text and list settings, cleared lists, model_args keys edgedistill sets itself."""

import re

import pytest

from edgedistill.config import load_config
from edgedistill.errors import EdgedistillError
from edgedistill.quantize.calibration import load_recipe
from edgedistill.targets import load_target

PROFILE = "arch: x86_64\ndevice: CPU\n"


def _refused(pattern: str, load, *args):
    """`load(*args)` fails with a one-line error (cause and fix) that `pattern` matches."""
    with pytest.raises(EdgedistillError) as caught:
        load(*args)
    assert re.search(pattern, caught.value.one_line()), caught.value.one_line()
    assert "\n" not in caught.value.one_line()


def _profile(tmp_path, extra: str):
    path = tmp_path / "t.yaml"
    path.write_text(PROFILE + extra)
    return path


@pytest.mark.parametrize("line", ["calibration:\n", "calibration: ''\n", "calibration: '  '\n"])
def test_empty_target_calibration_is_refused(tmp_path, line):
    """Empty, it calibrated on the current folder."""
    _refused("calibration is empty", load_target, str(_profile(tmp_path, line)))


@pytest.mark.parametrize("line", ["source:\n", "source: ''\n"])
def test_empty_recipe_source_is_refused(tmp_path, line):
    """Empty, it calibrated on the recipe's own folder."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(line + "samples: 4\nseed: 7\n")
    _refused(r"'calibration.source' is empty \(fix: set it to bundled", load_recipe, str(recipe))


@pytest.mark.parametrize("name", ["", "  "])
def test_blank_calibration_name_is_refused(name):
    _refused("quantize.calibration is empty", load_recipe, name)


@pytest.mark.parametrize("override,expected", [
    ("data.source=2024_01", "2024_01"),  # was 202401
    ("data.source=0755", "0755"),  # was 493 (octal)
    ("data.source=+5", "+5"),
    ("data.source=2024", "2024"),  # plain digits were and are the text
    ("quantize.calibration=0755", "0755"),
])
def test_yaml11_integers_in_text_settings_keep_their_text(override, expected):
    section, field = override.split("=")[0].split(".")
    assert getattr(getattr(load_config(None, [override]), section), field) == expected


@pytest.mark.parametrize("override,number", [
    ("bench.batch_sizes=1:8", 68),  # base 60
    ("bench.pin_cpus=1:2", 62),
    ("bench.pin_cpus=[0, 010]", 8),
    ("bench.efficiency_from=[2024_01]", 202401),
])
def test_yaml11_integers_in_lists_are_refused(override, number):
    _refused(f"which YAML reads as the number {number} \\(fix: quote it in YAML", load_config, None, [override])


@pytest.mark.parametrize("override", ["distill.steps=010", "bench.time_budget_s=1:30", "student.model_args={depth: 012}"])
def test_numbers_yaml11_reads_unlike_python_are_refused(override):
    _refused("which YAML reads as the number .*plain decimal digits", load_config, None, [override])


def test_numbers_python_reads_alike_are_kept():
    cfg = load_config(None, ["distill.steps=1_000", "distill.log_every=0x10", "student.model_args={depth: 1_2}"])
    assert (cfg.distill.steps, cfg.distill.log_every, cfg.student.model_args) == (1000, 16, {"depth": 12})
    assert type(cfg.distill.steps) is int and type(cfg.student.model_args["depth"]) is int


def test_yaml11_integers_in_files_keep_their_text(tmp_path):
    assert load_target(str(_profile(tmp_path, "calibration: 0755\n"))).calibration == "0755"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: 2024_01\n")
    assert load_recipe(str(recipe)).source == str(tmp_path / "2024_01")


@pytest.mark.parametrize("field", ["bench.efficiency_from", "bench.pin_cpus", "bench.batch_sizes", "teacher.extra"])
def test_an_empty_value_clears_a_list(field):
    section, name = field.split(".")
    assert getattr(getattr(load_config(None, [f"{field}="]), section), name) == ()


def test_cleared_op_types_say_nothing_would_be_quantized():
    _refused("'quantize.op_types' is empty, so nothing would be quantized", load_config, None, ["quantize.op_types="])


@pytest.mark.parametrize("value", ["[1]", "['']", "[[a]]"])
def test_efficiency_from_entries_must_be_paths(value):
    _refused("bench.efficiency_from has .*, which is no path", load_config, None, [f"bench.efficiency_from={value}"])


@pytest.mark.parametrize("override,fix", [
    ("student.model_args={pretrained: true}", "students start from random weights"),  # was KeyError, exit 3
    ("student.model_args={num_classes: 10}", "built headless"),  # was silently 0
    ("teacher.model_args={pretrained: false}", "set teacher.pretrained instead"),
])
def test_model_args_edgedistill_sets_itself_are_refused(override, fix):
    _refused(f"has (pretrained|num_classes): .*, which edgedistill sets itself \\(fix: .*{fix}", load_config, None, [override])


@pytest.mark.parametrize("args", ["{num_classes: 0}", "{pretrained: false}", "{img_size: 112}"])
def test_model_args_a_student_folder_built_with_what_edgedistill_passes_anyway_still_load(args):
    """timm's headless idiom, as folders built before the check hold it: refusing it would cost a re-training."""
    assert load_config(None, [f"student.model_args={args}"]).student.model_args


@pytest.mark.parametrize("overrides,section", [
    (["student.model_args={img_size: 224}"], "student"),  # timm got img_size twice, and ran the model_args one
    (["teacher.img_size=224", "teacher.model_args={img_size: 256}"], "teacher"),
    (["teacher.extra=[{name: vit_tiny_patch16_224, img_size: 32, model_args: {img_size: 64}}]"], "teacher.extra\\[0\\]"),
])
def test_model_args_img_size_beside_the_sections_own_is_refused(overrides, section):
    _refused(f"'{section}.model_args' has img_size, and {section}.img_size is \\d+ \\(fix: set {section}.img_size instead", load_config, None, overrides)


def test_a_student_with_pretrained_false_in_model_args_builds():
    from edgedistill.models.student import create_backbone  # timm got pretrained twice: a TypeError

    assert create_backbone("vit_tiny_patch16_224", 32, {"pretrained": False, "depth": 1, "patch_size": 8}) is not None


def test_a_teacher_at_its_default_size_may_pass_img_size_in_model_args():
    assert load_config(None, ["teacher.model_args={img_size: 224}"]).teacher.model_args == {"img_size": 224}


def test_teacher_num_classes_stays_allowed():
    """edgedistill does not set a teacher's: {num_classes: 0} is the fix for a checkpoint without a classifier."""
    assert load_config(None, ["teacher.model_args={num_classes: 0}"]).teacher.model_args == {"num_classes": 0}


def test_model_args_numbers_yaml11_leaves_as_text_are_numbers():
    """YAML 1.1 reads 1e-1 (no dot) and 1.5e5 (no exponent sign) as text, which timm got as '1e-1'."""
    args = load_config(None, ["student.model_args={drop_path_rate: 1e-1, init_values: 1.5e5, x: [2E-3, {y: -1e2}], act: gelu, v: '1.0'}"]).student.model_args
    assert args == {"drop_path_rate": 0.1, "init_values": 150000.0, "x": [0.002, {"y": -100.0}], "act": "gelu", "v": "1.0"}


def test_model_that_does_not_take_an_argument_says_so_in_one_line():
    """torch's overload listing made it seven lines."""
    from edgedistill.models.student import create_backbone

    _refused("does not take student.model_args .*: linspace", create_backbone, "vit_tiny_patch16_224", 32,
             {"depth": 1, "patch_size": 8, "drop_path_rate": "0.1"})


@pytest.mark.parametrize("name", ["profiles", "profiles.yaml"])
def test_a_target_folder_is_named_a_folder(tmp_path, name):
    (tmp_path / name).mkdir()
    _refused("is a folder, not a profile file", load_target, str(tmp_path / name))


@pytest.mark.parametrize("text", ["data.source=\udcff", "dat\udcfe.source=x"])
def test_set_with_bytes_that_are_no_utf8_says_so(text):
    """Python passes such argv bytes as lone surrogates; YAML's 'unacceptable character' got the fix 'quote it'."""
    _refused("is not valid UTF-8 text", load_config, None, [text])


def test_extra_teachers_keep_what_was_written_through_the_manifest():
    """The manifest stores the config as JSON, which later commands reload: a WrittenInt left in teacher.extra
    came back as the number (202401), and model_args' 1e-1 reached timm as text."""
    import json

    from edgedistill.config import teacher_list

    cfg = load_config(None, ["teacher.extra=[{name: vit_tiny_patch16_224, checkpoint: 2024_01, img_size: 0x40, model_args: {drop_path_rate: 1e-1}}]"])
    saved = json.loads(json.dumps(cfg.to_dict()))
    extra = teacher_list(load_config(None, [], base={"teacher": saved["teacher"]}).teacher)[1]
    assert (extra.checkpoint, extra.img_size, extra.model_args) == ("2024_01", 64, {"drop_path_rate": 0.1})


def test_an_empty_model_args_clears_it():
    assert load_config(None, ["student.model_args={depth: 2}", "student.model_args="]).student.model_args == {}


def test_a_nul_in_a_path_setting_is_a_one_line_error():
    _refused("config 'data.source' '.*' holds a NUL character", load_config, None, ['data.source="imgs\\0x"'])  # was a crash, exit 3


def test_a_bundled_target_name_beats_a_folder_of_that_name(tmp_path, monkeypatch):
    """`--out x86-cpu` is a usual build folder name; from its parent the target name read as that folder."""
    from edgedistill.targets import load_target

    (tmp_path / "x86-cpu").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_target("x86-cpu").device == "CPU"


def test_a_student_json_holds_no_key_the_readme_snippet_passes_itself():
    """student.json's model_args go to timm.create_model beside num_classes=0, pretrained=True and img_size (README):
    {num_classes: 0} there raised 'got multiple values for keyword argument'."""
    from edgedistill.models.own_args import without_own_keys

    args = load_config(None, ["student.model_args={num_classes: 0, pretrained: false, img_size: 112, depth: 2}"]).student.model_args
    assert without_own_keys(args, 112, "student") == {"depth": 2}
    assert without_own_keys({"num_classes": 0, "img_size": 448}, None, "teacher") == {"num_classes": 0, "img_size": 448}


def test_a_teacher_at_its_default_size_built_larger_through_model_args_runs_at_that_size():
    from edgedistill.config import TeacherConfig
    from edgedistill.models.teacher import create_teacher

    teacher = create_teacher(TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, model_args={"img_size": 64, "depth": 1}))
    assert list(teacher.data_config["input_size"][1:]) == [64, 64]  # its data config said 224, and the first forward failed
