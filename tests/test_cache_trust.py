"""A teacher cache is used only when it is what the run asks for, and never holds what training cannot use:
fp16 overflow, a rewritten teacher checkpoint, moved images, a re-created cache under a checkpoint, torchrun."""

import json
import shutil

import pytest
import torch

from edgedistill.config import TeacherConfig, load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill import cache as cache_mod
from edgedistill.distill import stage
from edgedistill.errors import EdgedistillError

TINY = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
    "student.name=vit_tiny_patch16_224", "student.img_size=28", "student.model_args={depth: 1, patch_size: 14}",
    "distill.batch_size=4", "distill.steps=2", "distill.warmup_steps=1", "distill.tensorboard=false", "distill.device=cpu",
]


def test_outputs_beyond_fp16_are_refused_with_the_dtype_that_holds_them():
    large = torch.tensor([[1.0, 1e5]])
    with pytest.raises(EdgedistillError, match=r"vit_l outputs reach 1e\+05, beyond torch.float16's range") as error:
        cache_mod.storable(large, torch.float16, "vit_l")
    assert "--dtype bfloat16" in error.value.fix
    assert cache_mod.storable(large, torch.bfloat16, "vit_l").dtype == torch.bfloat16
    with pytest.raises(EdgedistillError, match="NaN or inf outputs"):
        cache_mod.storable(torch.tensor([float("nan")]), torch.float32, "vit_l")


def test_cache_teacher_refuses_an_unknown_dtype_and_torchrun_before_any_work(tmp_path, monkeypatch):
    cfg = load_config(None, TINY)
    with pytest.raises(EdgedistillError, match="cannot store teacher outputs as .int8."):
        cache_mod.cache_teacher(cfg, tmp_path / "a", augmentations=1, dtype="int8")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(EdgedistillError, match="not under torchrun"):
        cache_mod.cache_teacher(cfg, tmp_path / "b", augmentations=1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_rewritten_teacher_checkpoint_is_another_teacher(tmp_path):
    from safetensors.torch import save_file

    checkpoint = tmp_path / "teacher.safetensors"
    save_file({"w": torch.zeros(4)}, str(checkpoint))
    config = TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, checkpoint=str(checkpoint))
    meta = {"format": cache_mod.FORMAT, "teachers": [{"name": config.name}], "teacher_configs": [cache_mod.teacher_identity(config)]}
    cache_mod.check_teachers("c", meta, [config])
    save_file({"w": torch.ones(4)}, str(checkpoint))  # fine-tuned, saved under the same path
    with pytest.raises(EdgedistillError, match="checkpoint's content has changed"):
        cache_mod.check_teachers("c", meta, [config])
    checkpoint.unlink()  # training from a cache needs no teacher file on this machine
    cache_mod.check_teachers("c", meta, [config])
    save_file({"w": torch.ones(4)}, str(checkpoint))
    older = {**meta, "teacher_configs": [{k: v for k, v in meta["teacher_configs"][0].items() if k != "checkpoint_sha256"}]}
    cache_mod.check_teachers("c", older, [config])  # made before checkpoints were hashed: the path decides


@pytest.fixture(scope="module")
def images_cache(tmp_path_factory):
    """A seed-only cache made from a folder named by a relative path."""
    root = tmp_path_factory.mktemp("moved")
    (root / "images").mkdir()
    for path in bundled_photo_paths()[:3]:
        shutil.copy(path, root / "images" / path.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        made = cache_mod.cache_teacher(load_config(None, TINY + ["data.source=images"]), root / "cache", augmentations=1)
    return root, made


def test_a_cache_follows_its_images_to_a_copy_and_serves_from_any_folder(images_cache, tmp_path, monkeypatch):
    root, made = images_cache
    assert cache_mod.read_cache(made)["data"]["source"] == str(root / "images")  # a relative source is recorded whole
    monkeypatch.chdir(tmp_path)  # the cache was made elsewhere, from a relative path
    assert len(stage.prepare(load_config(None, TINY + [f"distill.cache={made}"]), None).job.dataset) == 3

    copy = shutil.copytree(root / "images", tmp_path / "local-ssd")  # a node's local copy of the images
    moved = shutil.copytree(made, tmp_path / "cache")
    (root / "images").rename(root / "away")  # the original is not on this node
    try:
        job = stage.prepare(load_config(None, TINY + [f"distill.cache={moved}", "data.source=local-ssd"]), None).job
        assert job.dataset.views.source.source == "local-ssd" and len(job.dataset) == 3
        (copy / sorted(p.name for p in copy.iterdir())[0]).unlink()
        with pytest.raises(EdgedistillError, match=f"are not in data.source 'local-ssd' nor in '{root / 'images'}'"):
            stage.prepare(load_config(None, TINY + [f"distill.cache={moved}", "data.source=local-ssd"]), None)
    finally:
        (root / "away").rename(root / "images")


def test_a_larger_student_is_told_its_cached_views_are_upsampled(images_cache, capsys):
    root, made = images_cache
    larger = [o for o in TINY if not o.startswith("student.img_size")] + ["student.img_size=56", f"distill.cache={made}", f"data.source={root / 'images'}"]
    stage.prepare(load_config(None, larger), None)
    assert "holds 28 px views and the student takes 56 px" in " ".join(capsys.readouterr().err.split())
    stage.prepare(load_config(None, TINY + [f"distill.cache={made}", f"data.source={root / 'images'}"]), None)
    assert "upsampled" not in capsys.readouterr().err


def test_a_cache_re_created_at_the_same_path_is_another_dataset_for_resume(images_cache):
    _, made = images_cache

    class Cached:
        meta = cache_mod.read_cache(made)

    before = stage.dataset_identity(Cached)
    Cached.meta = {**Cached.meta, "seed": Cached.meta["seed"] + 1}  # same images and K, other views
    assert stage.dataset_identity(Cached) != before
    assert stage.earlier_identities(Cached) == [f"cache {Cached.meta['image_list']} {Cached.meta['entries']}"]
    Cached.meta = {k: v for k, v in Cached.meta.items() if k != "image_list"}  # caches from before the image check
    assert stage.earlier_identities(Cached) == [] and stage.dataset_identity(Cached).startswith("cache ")


def test_a_run_from_a_cache_resumes_after_moving_to_a_copy_of_its_images(images_cache, tmp_path):
    root, made = images_cache
    overrides = TINY + [f"distill.cache={made}", "distill.steps=3", "distill.checkpoint_every=1"]

    class Stop(Exception):
        pass

    def stop_after_2(step):
        if step == 2:
            raise Stop()

    with pytest.raises(Stop):
        stage.run(load_config(None, overrides + [f"data.source={root / 'images'}"]), {}, tmp_path / "build", on_step=stop_after_2)
    copy = shutil.copytree(root / "images", tmp_path / "local-ssd")  # the job moves to a node's local copy
    artifact = stage.run(load_config(None, overrides + [f"data.source={copy}"]), {}, tmp_path / "build")
    assert artifact.extra["train"]["resumed_from_step"] == 2  # the cache's identity, not the path, names its data


def test_a_cache_that_took_the_first_max_images_still_regenerates_them(tmp_path):
    from edgedistill.data.images import ImageSource

    made = cache_mod.cache_teacher(load_config(None, TINY + ["data.max_images=3"]), tmp_path / "cache", augmentations=1)
    meta_path = made / cache_mod.META
    meta = json.loads(meta_path.read_text())
    assert meta["subset"] == "spread"
    first = ImageSource("bundled", 3, subset="first")
    meta.pop("subset")  # as caches made before data.max_images spread over the images wrote it
    meta["image_list"] = first.fingerprint()
    meta_path.write_text(json.dumps(meta))
    job = stage.prepare(load_config(None, TINY + ["data.max_images=3", f"distill.cache={made}"]), None).job
    assert job.dataset.views.source.paths == first.paths != ImageSource("bundled", 3).paths


def test_a_teacher_checkpoint_counts_by_its_content_not_its_path(tmp_path, monkeypatch):
    import shutil

    from safetensors.torch import save_file

    checkpoint = tmp_path / "teacher.safetensors"
    save_file({"w": torch.zeros(4)}, str(checkpoint))
    config = TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, checkpoint=str(checkpoint))
    meta = {"format": cache_mod.FORMAT, "teachers": [{"name": config.name}], "teacher_configs": [cache_mod.teacher_identity(config)]}
    copy = tmp_path / "staged" / "teacher.safetensors"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)
    cache_mod.check_teachers("c", meta, [TeacherConfig(name=config.name, pretrained=False, checkpoint=str(copy))])  # a copy elsewhere
    monkeypatch.chdir(tmp_path)
    cache_mod.check_teachers("c", meta, [TeacherConfig(name=config.name, pretrained=False, checkpoint="teacher.safetensors")])  # relative
    with pytest.raises(EdgedistillError, match=r"set differently \(img_size: None in the cache, 64 now\)"):  # a difference names its values
        cache_mod.check_teachers("c", meta, [TeacherConfig(name=config.name, pretrained=False, checkpoint=str(copy), img_size=64)])
