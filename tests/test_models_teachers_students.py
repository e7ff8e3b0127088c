"""Teachers (timm names incl. hub tags, registers, CNNs, local safetensors, open_clip) and
students (plain ViTs, registers, efficientvit/fastvit/repvit) with pretrained=False tiny configs."""

import importlib.util
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from edgedistill.config import StudentConfig, TeacherConfig
from edgedistill.distill.module import DistillModule, Objective
from edgedistill.errors import EdgedistillError
from edgedistill.models.heads import ProteusHeads
from edgedistill.models.student import create_backbone, probe_student
from edgedistill.models.teacher import create_teacher, teacher_configs


def test_vit_teacher_with_registers_and_hub_tag_name():
    # a hub-tagged name resolves to the architecture; pretrained=False keeps it offline
    cfg = TeacherConfig(name="vit_small_patch14_reg4_dinov2.lvd142m", pretrained=False, img_size=28, model_args={"depth": 1})
    teacher = create_teacher(cfg)
    assert teacher.model.num_prefix_tokens == 5  # CLS + 4 registers are not patch tokens
    assert teacher.grid == (2, 2) and teacher.dim == teacher.patch_dim == 384
    targets = teacher.targets(torch.randn(2, 3, 28, 28))
    assert targets.patches.shape == (2, 4, 384) and targets.token.shape == (2, 384)
    features = teacher.model.forward_features(torch.zeros(1, 3, 28, 28))
    assert torch.allclose(teacher.targets(torch.zeros(1, 3, 28, 28)).token, features[:, 0], atol=1e-6)  # the normed CLS

@pytest.mark.parametrize("name, size, args", [
    ("eva02_tiny_patch14_224", 28, {"depth": 1}),  # EVA02 / BEiT: norm only in fc_norm, after pooling
    ("vit_tiny_patch16_224", 32, {"depth": 1, "global_pool": "avg"}),  # timm ViT with avg pooling does the same
])
def test_teachers_that_norm_only_their_pooled_summary_give_normed_patch_targets(name, size, args):
    teacher = create_teacher(TeacherConfig(name=name, pretrained=False, img_size=size, model_args=args))
    model, x = teacher.model, torch.randn(2, 3, size, size)
    with torch.no_grad():
        model.fc_norm.weight.uniform_(0.5, 2.0)  # a trained norm's scale, so an un-normed map cannot pass by chance
        model.fc_norm.bias.normal_()
        raw = model.forward_features(x)[:, model.num_prefix_tokens:]
        targets = teacher.targets(x)
    assert isinstance(model.norm, torch.nn.Identity)  # forward_features skipped the final norm
    assert torch.allclose(targets.patches, model.fc_norm(raw), atol=1e-5)
    assert torch.allclose(targets.token, model.forward_head(model.forward_features(x), pre_logits=True), atol=1e-6)



def test_cnn_teacher_and_local_safetensors_checkpoint(tmp_path):
    reference = timm.create_model("resnet10t", pretrained=False)
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    teacher = create_teacher(TeacherConfig(name="resnet10t", checkpoint=str(path), img_size=64))
    assert teacher.grid == (2, 2) and teacher.data_config["input_size"] == [3, 64, 64]
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(teacher.logits(x), reference.eval()(x), atol=1e-4)  # weights and classifier both loaded
    with pytest.raises(EdgedistillError, match="does not fit"):
        create_teacher(TeacherConfig(name="resnet14t", checkpoint=str(path)))


def test_the_offline_teacher_refuses_settings_it_would_ignore(tmp_path):
    for setting in ({"checkpoint": str(tmp_path / "mine.safetensors")}, {"model_args": {"depth": 1}}, {"pretrained": False}):
        with pytest.raises(EdgedistillError, match="takes no checkpoint"):
            create_teacher(TeacherConfig(**setting))


def test_unknown_teacher_and_bad_extra_are_user_errors():
    with pytest.raises(EdgedistillError, match="unknown teacher"):
        create_teacher(TeacherConfig(name="no_such_model_xyz", pretrained=False))
    with pytest.raises(EdgedistillError, match="teacher.extra"):
        teacher_configs(TeacherConfig(extra=("resnet10t",)))
    assert [c.weight for c in teacher_configs(TeacherConfig(extra=({"name": "resnet10t", "weight": 0.5},)))] == [1.0, 0.5]


def test_open_clip_teacher_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if open_clip_torch were not installed
    with pytest.raises(EdgedistillError) as info:
        create_teacher(TeacherConfig(name="open_clip:ViT-B-16/laion2b_s34b_b88k"))
    assert "edgedistill[vl]" in info.value.fix


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="needs the [vl] extra (open_clip_torch)")
def test_open_clip_weights_that_cannot_download_say_so(monkeypatch):
    import open_clip

    def offline(*args, **kwargs):  # open_clip's own wording when the hub cannot be reached
        raise RuntimeError("Failed to download weights for tag 'openai': Failed to download file (open_clip_pytorch_model.bin) "
                           "for timm/vit_base_patch32_clip_224.openai. Last error: ...")

    from edgedistill.models import hub_reach

    monkeypatch.setattr(open_clip, "create_model", offline)
    monkeypatch.setattr(hub_reach, "resolves", lambda host: True)  # the hub resolves, yet the download failed
    with pytest.raises(EdgedistillError) as info:
        create_teacher(TeacherConfig(name="open_clip:ViT-B-32/openai"))
    assert info.value.one_line().startswith("could not fetch open_clip weights 'ViT-B-32/openai': Failed to download weights")
    assert "connect to the internet, or set teacher.checkpoint" in info.value.fix
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(hub_reach, "resolves", lambda host: False)  # offline: the weights were looked for in the cache only
    with pytest.raises(EdgedistillError, match="huggingface.co does not resolve .* not in the local hub cache"):
        create_teacher(TeacherConfig(name="open_clip:ViT-B-32/openai"))


@pytest.mark.parametrize("name,size,maskable,args", [
    ("vit_tiny_patch16_224", 32, True, {"depth": 1, "reg_tokens": 2, "patch_size": 8}),
    ("vit_tiny_patch16_224", 32, True, {"depth": 1, "patch_size": 8, "dynamic_img_size": True}),  # NHWC patch embeddings
    ("eva02_tiny_patch14_224", 28, False, {"depth": 1}),  # ViT-like, but its own position embedding: no masking
    ("swin_tiny_patch4_window7_224", 56, False, {"depths": (1, 1), "num_heads": (1, 2), "embed_dim": 24}),  # NHWC maps
    ("efficientvit_b0", 64, False, {}),
    ("fastvit_t8", 64, False, {}),
    ("repvit_m0_9", 64, False, {}),
])
def test_students_train_one_step_against_a_vit_teacher(name, size, maskable, args):
    backbone = create_backbone(name, size, args)
    probe = probe_student(backbone, size)
    assert probe["maskable"] is maskable
    heads = ProteusHeads(probe["dim"], 24, 16, probe["summary_dim"])
    module = DistillModule(backbone, heads)
    from edgedistill.models.teacher import TeacherTargets

    targets = [TeacherTargets(torch.randn(2, 24), torch.randn(2, 9, 16), (3, 3))]  # a /14-style 3x3 teacher grid
    mask = torch.zeros(1 if maskable else 0, probe["n_patches"], dtype=torch.bool)  # sample 0 masked
    if maskable:
        mask[0, :2] = True
    loss, parts = module(torch.randn(2, 3, size, size), mask, targets, Objective(patch=1.0 if maskable else 0.0))
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"t0.token", "t0.patch", "t0.feature"}
    assert (parts["t0.patch"].item() > 0) is maskable
    assert backbone.blocks[0].attn.qkv.weight.grad is not None if maskable else any(p.grad is not None for p in backbone.parameters())


def test_nhwc_feature_maps_become_tokens_channel_last():
    """Swin returns [B, H, W, C]: read as NCHW, its 7x7x24 map would be 24x7 tokens of width 7."""
    cfg = TeacherConfig(name="swin_tiny_patch4_window7_224", pretrained=False, img_size=56,
                        model_args={"depths": (1, 1), "num_heads": (1, 2), "embed_dim": 24})
    teacher = create_teacher(cfg)
    x = torch.randn(2, 3, 56, 56)
    features = teacher.model.forward_features(x)  # [2, 7, 7, 48]
    targets = teacher.targets(x)
    assert teacher.grid == (7, 7) and teacher.patch_dim == teacher.dim == 48
    assert torch.equal(targets.patches[:, 3 * 7 + 5], features[:, 3, 5])  # token (row 3, col 5) is that map cell
    student = create_backbone("swin_tiny_patch4_window7_224", 56, dict(cfg.model_args))
    assert probe_student(student, 56)["grid"] == (7, 7)


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="needs the [vl] extra (open_clip_torch)")
def test_open_clip_tower_summary_is_the_clip_image_embedding():
    import open_clip

    teacher = create_teacher(TeacherConfig(name="open_clip:ViT-B-32", pretrained=False))
    reference = open_clip.create_model("ViT-B-32").eval()
    reference.visual.load_state_dict(teacher.model.visual.state_dict())
    x = torch.randn(1, 3, 224, 224)
    targets = teacher.targets(x)
    assert teacher.grid == (7, 7) and targets.patches.shape == (1, 49, 768)
    assert torch.allclose(targets.token, reference.encode_image(x), atol=1e-5)


def test_token_and_feature_levels_see_the_clean_input_whatever_is_masked():
    """Proteus reference: the masked pass feeds only the patch level; token and feature use a clean pass."""
    torch.manual_seed(0)
    backbone = create_backbone("vit_tiny_patch16_224", 32, {"depth": 1, "patch_size": 8})
    module = DistillModule(backbone, ProteusHeads(192, 24, 24, 192)).eval()
    from edgedistill.models.teacher import TeacherTargets

    targets = [TeacherTargets(torch.randn(2, 24), torch.randn(2, 16, 24), (4, 4))]
    x = torch.randn(2, 3, 32, 32)
    every_sample_masked = torch.rand(2, 16).argsort(1) < 8
    _, masked = module(x, every_sample_masked, targets, Objective())
    _, unmasked = module(x, torch.zeros(0, 16, dtype=torch.bool), targets, Objective())
    assert masked["t0.token"] == unmasked["t0.token"] and masked["t0.feature"] == unmasked["t0.feature"]
    assert masked["t0.patch"] > 0 and unmasked["t0.patch"] == 0
    # the feature map's summary slot is the token head's output: equal teacher targets everywhere give token-loss share
    same = [TeacherTargets(torch.zeros(2, 24), torch.zeros(2, 16, 24), (4, 4))]
    _, parts = module(x, torch.zeros(0, 16, dtype=torch.bool), same, Objective())
    token_sq = module.heads.token(summary_of(backbone, x)).pow(2).mean()
    patch_sq = module.heads.feature(backbone.forward_features(x)[:, 1:]).pow(2).mean()
    assert parts["t0.feature"].item() == pytest.approx(((token_sq + 16 * patch_sq) / 17).item(), rel=1e-5)


def summary_of(backbone, x):
    from edgedistill.models.student import summary_token

    return summary_token(backbone, backbone.forward_features(x))


@pytest.mark.parametrize("args", [{"reg_tokens": 2}, {"dynamic_img_size": True}])
def test_one_pass_over_clean_and_masked_inputs_matches_timm(args):
    from edgedistill.models.tokens import token_maps

    torch.manual_seed(0)
    backbone = create_backbone("vit_tiny_patch16_224", 32, {"depth": 2, "patch_size": 8, **args}).eval()
    mask_token = torch.randn(1, 1, 192)
    x = torch.randn(3, 3, 32, 32)
    nothing = torch.zeros(2, 16, dtype=torch.bool)
    clean, unmasked = token_maps(backbone, x, nothing, mask_token)
    assert torch.allclose(clean, backbone.forward_features(x), atol=1e-5)  # the retrace is timm's forward_features
    assert torch.allclose(unmasked, backbone.forward_features(x[:2]), atol=1e-5)
    some = nothing.clone()
    some[1, 3] = True
    _, masked = token_maps(backbone, x, some, mask_token)
    assert torch.allclose(masked[0], unmasked[0], atol=1e-5) and not torch.allclose(masked[1], unmasked[1], atol=1e-3)


@pytest.mark.parametrize("name,args,grid", [
    ("volo_d1_224", {}, (14, 14)),  # a class token without timm's num_prefix_tokens
    ("coat_lite_tiny", {}, (7, 7)),  # the last stage's cls_token4
])
def test_prefix_tokens_of_families_without_the_attribute_are_not_patches(name, args, grid):
    teacher = create_teacher(TeacherConfig(name=name, pretrained=False, model_args=args))
    assert teacher.grid == grid


@pytest.mark.parametrize("name,cause", [
    ("pit_ti_224", "returns only its 1 class token(s), no patch tokens"),  # was read as a 1x1 grid
    ("crossvit_tiny_240", "returns no single token or feature map"),  # was an AttributeError traceback
])
def test_models_without_a_spatial_map_are_refused_with_a_fix(name, cause):
    with pytest.raises(EdgedistillError, match=r"no (patch tokens|single token)") as teacher_error:
        create_teacher(TeacherConfig(name=name, pretrained=False))
    assert cause in teacher_error.value.one_line() and "choose a model" in teacher_error.value.fix
    with pytest.raises(EdgedistillError, match=cause.split("(")[0][:20]):
        probe_student(timm.create_model(name, pretrained=False, num_classes=0), 240 if "240" in name else 224)


def test_model_args_of_another_family_are_a_config_error():
    with pytest.raises(EdgedistillError, match=r"student 'resnet18' does not take student.model_args \{'depth': 1\}") as error:
        create_backbone("resnet18", 32, {"depth": 1})
    assert "drop or correct student.model_args" in error.value.fix
    with pytest.raises(EdgedistillError, match=r"teacher 'resnet10t' does not take teacher.model_args"):
        create_teacher(TeacherConfig(name="resnet10t", pretrained=False, model_args={"depth": 1}))


@pytest.mark.parametrize("role, size, args, cause", [
    ("student", 8, {"depth": 1}, "fails on its 8x8 input (model_args {'depth': 1}): Calculated padded input size"),  # smaller than a patch
    ("teacher", 8, {"depth": 1}, "fails on its 8x8 input"),
    ("student", 32, {"img_size": 64}, "fails on its 32x32 input (model_args {'img_size': 64}): Input height (32) doesn't match model (64)"),
    ("student", 32, {"embed_dim": 100}, "cannot be built (img_size 32, model_args {'embed_dim': 100}): dim should be divisible by num_heads"),
    ("teacher", 32, {"depth": -1}, "cannot be built (img_size 32, model_args {'depth': -1})"),
])
def test_settings_a_model_cannot_take_are_one_line_errors(role, size, args, cause):
    with pytest.raises(EdgedistillError) as error:
        if role == "student":
            probe_student(create_backbone("vit_tiny_patch16_224", size, args), size, StudentConfig("vit_tiny_patch16_224", size, args))
        else:
            create_teacher(TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, img_size=size, model_args=args))
    assert f"{role} 'vit_tiny_patch16_224' {cause}" in error.value.one_line() and "\n" not in error.value.one_line()
    assert f"set {role}.img_size and {role}.model_args" in error.value.fix


def test_unreadable_teacher_checkpoints_are_one_line_errors(tmp_path):
    model = timm.create_model("resnet10t", pretrained=False)
    files = {"junk.safetensors": b"\x00" * 7, "junk.pth": b"not a zip or pickle" * 10}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save(model, tmp_path / "whole-model.pth")  # a pickled module, which weights_only refuses
    for name in [*files, "whole-model.pth"]:
        with pytest.raises(EdgedistillError, match="cannot read checkpoint") as error:
            create_teacher(TeacherConfig(name="resnet10t", pretrained=False, checkpoint=str(tmp_path / name)))
        assert "state_dict" in error.value.fix, name
    with pytest.raises(EdgedistillError, match="is a folder"):
        create_teacher(TeacherConfig(name="resnet10t", pretrained=False, checkpoint=str(tmp_path)))


def test_a_student_that_pools_to_no_vector_is_refused_before_training():
    backbone = create_backbone("vit_tiny_patch16_224", 32, {"depth": 1, "global_pool": ""})
    with pytest.raises(EdgedistillError, match=r"pools to shape \(1, 5, 192\), not one vector per image"):
        probe_student(backbone, 32)


def test_a_student_that_drops_patch_tokens_is_refused():
    # PatchDropout keeps a shuffled subset of tokens in training: they no longer lie on the grid the targets are aligned to
    with pytest.raises(EdgedistillError, match="patch_drop_rate 0.5 drops and shuffles patch tokens") as error:
        probe_student(create_backbone("vit_tiny_patch16_224", 32, {"depth": 1, "patch_drop_rate": 0.5}), 32)
    assert "remove patch_drop_rate" in error.value.fix


def test_teacher_checkpoints_load_as_timm_would_load_them(tmp_path):
    """Files from training scripts (DDP's module., Lightning's model., a wrapping dict), saved at another
    img_size (pos_embed resampled by the family's checkpoint_filter_fn), or without or with another head."""
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1)
    state = reference.state_dict()
    files = {
        "ddp.pth": {f"module.{k}": v for k, v in state.items()},
        "lightning.pth": {"state_dict": {f"model.{k}": v for k, v in state.items()}},
        "plain.safetensors": state,
    }
    for name, content in files.items():
        if name.endswith(".pth"):
            torch.save(content, tmp_path / name)
        else:
            from safetensors.torch import save_file

            save_file(content, str(tmp_path / name))
    for name in files:
        teacher = create_teacher(TeacherConfig(name="vit_tiny_patch16_224", checkpoint=str(tmp_path / name), model_args={"depth": 1}))
        assert torch.equal(teacher.model.blocks[0].attn.qkv.weight, reference.blocks[0].attn.qkv.weight), name
    smaller = create_teacher(TeacherConfig(name="vit_tiny_patch16_224", checkpoint=str(tmp_path / "ddp.pth"), img_size=112, model_args={"depth": 1}))
    assert smaller.model.pos_embed.shape[1] == 1 + 7 * 7  # resampled from 14x14, as timm's hub loading does

    torch.save({k: v for k, v in state.items() if not k.startswith("head.")}, tmp_path / "backbone.pth")
    with pytest.raises(EdgedistillError, match="Missing key") as error:
        create_teacher(TeacherConfig(name="vit_tiny_patch16_224", checkpoint=str(tmp_path / "backbone.pth"), model_args={"depth": 1}))
    assert error.value.fix == "the checkpoint has no classifier head: set model_args={num_classes: 0} for this model"
    torch.save({**state, "head.weight": torch.zeros(10, 192), "head.bias": torch.zeros(10)}, tmp_path / "ten.pth")
    with pytest.raises(EdgedistillError, match="size mismatch") as error:
        create_teacher(TeacherConfig(name="vit_tiny_patch16_224", checkpoint=str(tmp_path / "ten.pth"), model_args={"depth": 1}))
    assert error.value.fix == "the checkpoint's classifier has 10 classes: set model_args={num_classes: 10}"


def test_original_deit3_checkpoints_load_with_their_layer_scales(tmp_path):
    """Meta's DeiT-III files name the layer scales blocks.N.gamma_1/gamma_2, which timm's hub loading renames."""
    reference = timm.create_model("deit3_small_patch16_224", pretrained=False, depth=2)
    torch.nn.init.normal_(reference.blocks[1].ls2.gamma)
    original = {k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2"): v for k, v in reference.state_dict().items()}
    assert "blocks.1.gamma_2" in original
    torch.save({"model": original}, tmp_path / "deit_3_small_224_1k.pth")
    teacher = create_teacher(TeacherConfig(name="deit3_small_patch16_224", checkpoint=str(tmp_path / "deit_3_small_224_1k.pth"), model_args={"depth": 2}))
    assert torch.equal(teacher.model.blocks[1].ls2.gamma, reference.blocks[1].ls2.gamma)


@pytest.mark.parametrize("config, cause", [
    (dict(name="open_clip:ViT-B-32"), "names no pretrained weights"),  # open_clip only warned and built random weights
    (dict(name="open_clip:ViT-B-32/openai", img_size=112), "takes no img_size or model_args"),  # ignored before
    (dict(name="open_clip:ViT-B-32/openai", model_args={"depth": 1}), "takes no img_size or model_args"),
])
def test_open_clip_settings_it_cannot_honour_are_refused_before_any_download(config, cause):
    with pytest.raises(EdgedistillError, match=cause):
        create_teacher(TeacherConfig(**config))


def test_a_clip_towers_projection_is_no_classifier_but_a_set_num_classes_is():
    """timm's CLIP image towers keep their image-text projection as `head` (num_classes 512): top-1 over
    its 512 embedding dimensions is no class agreement. A head the user sized (model_args) is one."""
    clip = create_teacher(TeacherConfig(name="vit_base_patch16_clip_224.openai", pretrained=False, img_size=32, model_args={"depth": 1}))
    assert clip.model.num_classes == 512 and clip.classifier is None
    imagenet = create_teacher(TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, img_size=32, model_args={"depth": 1}))
    assert imagenet.classifier is not None and imagenet.classifier.out_features == 1000
    ten = create_teacher(TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, img_size=32, model_args={"depth": 1, "num_classes": 10}))
    assert ten.classifier is not None and ten.classifier.out_features == 10


def test_a_classifier_over_labels_timm_does_not_know_is_still_one():
    """A hub fine-tune sets num_classes through its pretrained config (not model_args): still a classifier."""
    teacher = create_teacher(TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, img_size=32,
                                           model_args={"depth": 1, "pretrained_cfg_overlay": {"num_classes": 37}}))
    assert teacher.model.num_classes == 37 and teacher.classifier is not None and teacher.classifier.out_features == 37


@pytest.mark.parametrize("name, args, recorded", [
    ("fastvit_t8", {}, None), ("efficientvit_b0", {}, None),  # no img_size in their constructors
    ("repvit_m0_9", {}, 64), ("vit_tiny_patch16_224", {"depth": 1}, 64),
])
def test_student_json_records_img_size_only_for_families_whose_constructor_takes_it(name, args, recorded):
    from edgedistill.models.student import constructor_img_size

    model = create_backbone(name, 64, args)
    assert constructor_img_size(model, 64) == recorded
    # README's plain-timm snippet passes img_size=spec["img_size"]: timm drops a None, so it builds every family
    again = timm.create_model(name, pretrained=False, num_classes=0, img_size=constructor_img_size(model, 64), **args)
    assert type(again) is type(model)
