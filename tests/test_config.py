import re

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
    ("distill.compile_mode=fast", "'distill.compile_mode' is 'fast', which is not a known choice (fix: use one of: default, max-autotune-no-cudagraphs"),
    ("data.max_images=-3", "'data.max_images' is -3, which is out of range (fix: set it at least 1, or data.max_images= (null) for all images)"),
    ("data.max_images=0", "'data.max_images' is 0, which is out of range"),
    ("distill.token_weight=-1", "'distill.token_weight' is -1.0, which is out of range (fix: set it 0 (off) or more)"),
    ("distill.patch_weight=-0.5", "'distill.patch_weight' is -0.5, which is out of range"),
    ("distill.feature_weight=-1", "'distill.feature_weight' is -1.0, which is out of range"),
    ("distill.grad_clip=-1", "'distill.grad_clip' is -1.0, which is out of range (fix: set it 0 (no clipping) or more)"),
    ("distill.weight_decay=-1", "'distill.weight_decay' is -1.0, which is out of range (fix: set it 0 or more)"),
    ("distill.seed=-1", "'distill.seed' is -1, which is out of range (fix: set it in [0, 4294967295]"),
    ("distill.seed=4294967296", "'distill.seed' is 4294967296, which is out of range"),
    ("student.img_size=0", "'student.img_size' is 0, which is out of range (fix: set it at least 1)"),
    ("teacher.img_size=-5", "'teacher.img_size' is -5, which is out of range"),
    ("teacher.weight=-1", "'teacher.weight' is -1.0, which is out of range (fix: set it 0 or more)"),
    ("teacher.extra=[{name: resnet10t, weight: -2}]", "'teacher.extra[0].weight' is -2.0, which is out of range (fix: set it 0 or more)"),
    ("teacher.extra=[{name: resnet10t, img_size: 0}]", "'teacher.extra[0].img_size' is 0, which is out of range"),
    ("data.auto_augment=bogus", "'data.auto_augment' is 'bogus': the policy 'bogus' is not one of rand, augmix, original, originalr, v0, v0r, 3a (fix: write a timm policy such as rand-m9-mstd0.5-inc1"),
    ("data.auto_augment=randbogus-m9", "the policy 'randbogus' is not one of rand"),
    ("data.auto_augment=rand-m9-mstd0,5", "'mstd0,5' needs a number after 'mstd'"),  # timm would skip it without a word
    ("data.auto_augment=rand-mx", "the section 'mx' is not a setting of rand (m, n, mstd, mmax, inc, p, t<set>, each followed by its number)"),
    ("data.auto_augment=rand-m9.5", "'m9.5' needs a whole number after 'm'"),
    ("data.auto_augment=original-m9", "the section 'm9' is not a setting of original (mstd, each"),
    ("data.auto_augment=augmix-q1", "the section 'q1' is not a setting of augmix"),
    ("distill.device=tpu", "'distill.device' is 'tpu', which is not a known choice (fix: use one of: auto, cpu, cuda, cuda:N)"),
    ("distill.device=cuda:x", "'distill.device' is 'cuda:x', which is not a known choice"),
    ("data.view_size=0", "'data.view_size' is 0, which is out of range (fix: set it at least 1, or data.view_size= (null)"),
    ("data.scale_min=0", "'data.scale_min' is 0.0, which is out of range (fix: set it in (0, 1]"),
    ("data.scale_min=1.5", "'data.scale_min' is 1.5, which is out of range"),
    ("bench.warmup=-1", "'bench.warmup' is -1, which is out of range (fix: set it 0 or more"),
    ("bench.iterations=0", "'bench.iterations' is 0, which is out of range (fix: set it at least 1"),
    ("bench.time_budget_s=0", "'bench.time_budget_s' is 0.0, which is out of range (fix: set it above 0"),
    ("bench.batch=0", "'bench.batch' is 0, which is out of range"),
    ("bench.threads=0", "'bench.threads' is 0, which is out of range"),
    ("bench.eval_images=0", "'bench.eval_images' is 0, which is out of range"),
    ("bench.eval_max_images=3", "'bench.eval_max_images' is 3, which is out of range (fix: set it at least 4"),
    ("bench.knn_k=0", "'bench.knn_k' is 0, which is out of range"),
    ("distill.steps=.inf", "'distill.steps' must be a finite number, got inf"),
    ("distill.lr=.nan", "'distill.lr' must be a finite number, got nan"),
    ("distill.lr=1e-3x", "'distill.lr' must be a number, got '1e-3x'"),
    ("data.source=", "'data.source' is empty (fix: set it to bundled, a folder"),  # it read the current folder
    ("student.name=' '", "'student.name' is empty"),
    ("teacher.weight=0", "every teacher has weight 0, so distillation would learn nothing"),
    ("teacher.extra=[vit_small_patch16_224]", "teacher.extra[0] must be a mapping of teacher keys"),  # was an AttributeError
    ("bench.batch_sizes=[1, 0]", "bench.batch_sizes [1, 0] holds a size below 1"),  # was dropped silently
    ("bench.pin_cpus=0-l", "bench.pin_cpus has '0-l', not a CPU id or range"),  # was found by bench, after the report went
])
def test_bad_overrides_are_clear(override, fragment):
    with pytest.raises(EdgedistillError) as info:
        load_config(None, [override])
    assert fragment in info.value.one_line()


def test_a_primary_teacher_of_weight_0_is_refused_while_an_extra_one_may_be():
    # the primary teacher's heads are the deployed ones: at weight 0 they stayed random while the build finished
    with pytest.raises(EdgedistillError, match="teacher.weight is 0, but the primary teacher's heads are the ones the student deploys"):
        load_config(None, ["teacher.extra=[{name: resnet10t, weight: 1}]", "teacher.weight=0"])
    assert load_config(None, ["teacher.extra=[{name: resnet10t, weight: 0}]"]).teacher.weight == 1.0


def test_good_values_at_the_new_limits_still_load():
    cfg = load_config(None, ["data.max_images=", "teacher.img_size=", "distill.seed=4294967295", "distill.grad_clip=0",
                             "distill.patch_weight=0", "distill.device=cuda:1", "teacher.extra=[{name: resnet10t, weight: 0}]"])
    assert cfg.data.max_images is None and cfg.teacher.img_size is None  # null still means all images / the default size
    assert cfg.distill.device == "cuda:1" and cfg.teacher.extra == ({"name": "resnet10t", "weight": 0},)
    for policy in ("", "rand-m9-mstd0.5-inc1", "augmix-m5-w4-d2", "original", "v0r", "3a"):
        assert load_config(None, [f"data.auto_augment={policy}"]).data.auto_augment == policy


def test_numbers_in_exponent_notation_load_as_numbers(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as text; users write learning rates that way
    cfg = load_config(None, ["distill.lr=1e-3", "distill.steps=2E2", "distill.weight_decay=+5e-2"])
    assert (cfg.distill.lr, cfg.distill.steps, cfg.distill.weight_decay) == (0.001, 200, 0.05) and isinstance(cfg.distill.steps, int)
    (tmp_path / "c.yaml").write_text("distill:\n  lr: 3e-4\n")
    assert load_config(tmp_path / "c.yaml").distill.lr == 3e-4


def test_weights_that_zero_every_loss_are_refused():
    with pytest.raises(EdgedistillError, match="are all 0, so distillation would learn nothing"):
        load_config(None, ["distill.token_weight=0", "distill.patch_weight=0", "distill.feature_weight=0"])
    assert load_config(None, ["distill.token_weight=0", "distill.patch_weight=0"]).distill.feature_weight == 1.0


def test_every_accepted_auto_augment_policy_is_one_timm_builds():
    from timm.data import create_transform

    for policy in ("rand-m9-n3-mstd0.5-mmax10-inc1-p0.5", "augmix-m5-w4-d2-a1.0-b1-mstd0.5", "original-mstd0.5", "originalr", "v0", "v0r", "3a"):
        load_config(None, [f"data.auto_augment={policy}"])
        create_transform(input_size=32, is_training=True, auto_augment=policy)


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    import torch

    from edgedistill.distill.trainer import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu" and pick_device("cpu").type == "cpu"
    for name in ("cuda", "cuda:0"):
        with pytest.raises(EdgedistillError) as info:
            pick_device(name)
        assert info.value.one_line() == f"distill.device is '{name}', but CUDA is not available on this machine (fix: set distill.device=cpu or auto)"


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(EdgedistillError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill: [unclosed")
    with pytest.raises(EdgedistillError, match="not valid YAML"):
        load_config(bad)
    bad.write_bytes(b"distill:\n  steps: \xff\xfe\n")
    with pytest.raises(EdgedistillError, match="is not UTF-8 text"):
        load_config(bad)
    bad.write_text("1: x\nfoo: y\n")  # keys of two types: listing the unknown ones must not fail
    with pytest.raises(EdgedistillError, match="unknown config key '1'"):
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
    before = {name: dataclasses.asdict(getattr(cfg, name)) for name in sections}  # the hash before these fields existed
    del before["teacher"]["dtype"], before["distill"]["compile_mode"], before["distill"]["overlap_teacher"]
    for token_term in ("text_embeddings", "vl_weight", "pvl_weight", "vl_texts", "vl_temperature", "logit_weight", "logit_temperature",
                       "finetune_labels", "finetune_steps", "finetune_lr", "finetune_holdout"):
        del before["distill"][token_term]
    assert COMPATIBLE_ADDITIONS == {"teacher.dtype": "fp32", "distill.compile_mode": "default", "distill.overlap_teacher": False,
                                    "distill.text_embeddings": None, "distill.vl_weight": 1.0, "distill.pvl_weight": 1.0,
                                    "distill.vl_texts": 4096, "distill.vl_temperature": 0.0, "distill.logit_weight": 0.0,
                                    "distill.logit_temperature": 1.0, "distill.finetune_labels": None, "distill.finetune_steps": 300,
                                    "distill.finetune_lr": 1e-4, "distill.finetune_holdout": 0.2, "quantize.fallback_refine": 0,
                                    "bench.zero_shot_head": None}
    assert cfg.section_hash(*sections) == hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:16]
    bf16 = load_config(None, ["teacher.dtype=bf16"])
    assert bf16.section_hash(*sections) != cfg.section_hash(*sections)  # a distilled student depends on it
    assert bf16.section_hash("teacher", ignore={"teacher.dtype"}) == cfg.section_hash("teacher")  # export's evalset does not
    sqnr_only = load_config(None, ["quantize.fallback_refine=0"]).section_hash("quantize")  # as before the field existed
    quantize = dataclasses.asdict(cfg.quantize)
    del quantize["fallback_refine"]
    assert sqnr_only == hashlib.sha256(json.dumps({"quantize": quantize}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    bench = dataclasses.asdict(cfg.bench)
    del bench["zero_shot_head"]  # unset, bench's key is as before: upgrading does not re-run every build's bench
    assert cfg.section_hash("bench") == hashlib.sha256(json.dumps({"bench": bench}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_extra_teachers_follow_the_primary_teachers_choices():
    from edgedistill.models.teacher import teacher_configs

    from edgedistill.config import TeacherConfig

    with pytest.raises(EdgedistillError, match=r"teacher.extra\[0\].dtype' is 'fp16'") as caught:  # when the config loads
        load_config(None, ["teacher.extra=[{name: resnet10t, dtype: fp16}]"])
    assert "fp32, bf16" in caught.value.fix
    with pytest.raises(EdgedistillError, match=r"teacher.extra\[0\].dtype' is 'fp16'") as caught:  # a config built in code
        teacher_configs(TeacherConfig(extra=({"name": "resnet10t", "dtype": "fp16"},)))
    assert "fp32, bf16" in caught.value.fix


@pytest.mark.parametrize("override, cause", [
    ("student.model_args={depth:2,embed_dim:64}", "has the key 'depth:2', which is no keyword argument"),  # YAML: keys without values
    ("student.model_args={depth: null}", "'student.model_args.depth' has no value"),
    ("teacher.model_args={depth:1}", "'teacher.model_args' has the key 'depth:1'"),
    ("teacher.extra=[{name: vit_tiny_patch16_224, model_args: {depth:1}}]", "'teacher.extra[0].model_args' has the key"),
])
def test_model_args_timm_would_silently_drop_are_refused(override, cause):
    """timm.create_model drops None-valued kwargs: the default-size model would be trained and shipped."""
    with pytest.raises(EdgedistillError, match=re.escape(cause)) as error:
        load_config(None, [override])
    assert "space after the colon" in error.value.fix or "leave it out" in error.value.fix
    assert load_config(None, ["student.model_args={depth: 2, embed_dim: 64}"]).student.model_args == {"depth": 2, "embed_dim": 64}


@pytest.mark.parametrize("override, cause", [
    ("quantize.op_types=[matmul,gemm]", "has 'matmul', which is no ONNX operator"),  # matched nothing: a float model labelled int8
    ("quantize.op_types=[]", "is empty, so nothing would be quantized"),
    ("quantize.nncf_model_type=trasformer", "not a known choice"),  # found only after the ORT quantization ran
    ("export.opset=0", "out of range"),  # a torch traceback
    ("export.parity_min_cosine=2", "out of range"),  # blamed the model
    ("bench.pin_cpus=1-0", "runs backwards"),  # pinned nothing
])
def test_values_found_late_or_never_are_refused_when_the_config_loads(override, cause):
    with pytest.raises(EdgedistillError, match=re.escape(cause)) as error:
        load_config(None, [override])
    assert error.value.fix
    if "matmul" in override:
        assert error.value.fix == "write it as MatMul"


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    """PyYAML keeps the last of two `distill:` sections: the recipe's 20000 steps became the default 120."""
    path = tmp_path / "recipe.yaml"
    path.write_text("distill:\n  steps: 20000\nstudent:\n  img_size: 112\ndistill:\n  lr: 0.001\n")
    with pytest.raises(EdgedistillError, match=re.escape("the key 'distill' is given twice (line 5)")):
        load_config(path)
    with pytest.raises(EdgedistillError, match="the key 'depth' is given twice"):
        load_config(None, ["student.model_args={depth: 2, depth: 3}"])
    with pytest.raises(EdgedistillError, match="not valid YAML"):  # was a yaml traceback
        load_config(None, ["student.model_args={"])


def test_yaml_merge_keys_still_share_settings_and_odd_keys_stay_one_line(tmp_path):
    """The duplicate-key check must not refuse `<<: *anchor` (valid YAML, the usual way to share teacher settings)."""
    path = tmp_path / "recipe.yaml"
    path.write_text("teacher:\n  name: vit_base_patch16_clip_224.openai\n  extra:\n"
                    "    - &shared {name: vit_base_patch16_siglip_224.webli, img_size: 224, weight: 0.5}\n"
                    "    - {<<: *shared, name: vit_small_patch16_224, weight: 0.25}\n")
    cfg = load_config(path)
    assert cfg.teacher.extra[1] == {"name": "vit_small_patch16_224", "img_size": 224, "weight": 0.25}
    with pytest.raises(EdgedistillError, match="not valid YAML"):  # was a TypeError, i.e. "a bug", exit 3
        load_config(None, ["teacher.model_args={[a]: 1}"])


def test_a_key_of_each_mapping_in_a_list_field_can_be_left_out_of_a_sections_hash():
    from edgedistill.config import load_config

    def extra(path):
        return load_config(None, [f"teacher.extra=[{{name: resnet10t, checkpoint: {path}, weight: 0.5}}]"])

    ignore = {"teacher.extra.checkpoint"}
    assert extra("/a/t.safetensors").section_hash("teacher", ignore=ignore) == extra("/b/t.safetensors").section_hash("teacher", ignore=ignore)
    assert extra("/a/t.safetensors").section_hash("teacher") != extra("/b/t.safetensors").section_hash("teacher")
    assert load_config(None, ["teacher.extra=[{name: resnet10t, weight: 0.5}]"]).hashed_section("teacher", ignore)["extra"] == [{"name": "resnet10t", "weight": 0.5}]
