"""Teacher cache: a step from the cache gives the same loss as the same step with the teacher online,
and distillation from the cache runs without building any teacher."""

import json
import math

import pytest
import torch
from torch.utils.data import default_collate

from edgedistill.config import load_config
from edgedistill.distill import cache as cache_mod
from edgedistill.distill import stage
from edgedistill.distill.trainer import autocast_for, objective_for, step_loss

TINY = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
    "teacher.extra=[{name: resnet10t, pretrained: false, img_size: 32, weight: 0.5}]",
    "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
    "data.max_images=3", "distill.batch_size=4", "distill.steps=2", "distill.warmup_steps=1", "distill.tensorboard=false",
    "distill.device=cpu",  # cache and online step on the same device and precision, also on GPU hosts
]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    cfg = load_config(None, TINY)
    root = tmp_path_factory.mktemp("cache")
    dirs = {d: cache_mod.cache_teacher(cfg, root / d, augmentations=2, shard_size=4, dtype=d) for d in ("float32", "float16")}
    dirs["stored-views"] = cache_mod.cache_teacher(cfg, root / "stored-views", augmentations=2, shard_size=4, store_views=True)
    return cfg, dirs


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_cached_step_loss_equals_online_step_loss(caches, dtype, tol):
    cfg, dirs = caches
    meta = cache_mod.read_cache(dirs[dtype])
    assert meta["entries"] == 6 and len(meta["shards"]) == 2 and [t["name"] for t in meta["teachers"]] == ["vit_tiny_patch16_224", "resnet10t"]
    online = stage.prepare(cfg, None).job
    cached = stage.prepare(load_config(None, TINY + [f"distill.cache={dirs[dtype]}"]), None).job
    entries = [0, 3, 4, 5]  # crosses a shard boundary
    cached_batch = default_collate([cached.dataset[(j, 0)] for j in entries])
    online_batch = default_collate([online.dataset[(int(cached.dataset.index[j]), int(cached.dataset.seed[j]))] for j in entries])
    assert torch.equal(cached_batch["view"], online_batch["view"])  # the seed regenerates the exact pixels
    objective = objective_for(cfg.distill, True)
    autocast = autocast_for(cfg.distill, torch.device("cpu"))
    online.module.eval()  # no dropout differences; the same module computes both losses
    cached.targets.to(torch.device("cpu"))
    loss_online, parts_online = step_loss(online.module, online, online_batch, 3, autocast, objective)
    loss_cached, parts_cached = step_loss(online.module, cached, cached_batch, 3, autocast, objective)
    assert set(parts_online) == {f"t{i}.{k}" for i in (0, 1) for k in ("token", "patch", "feature")}
    assert loss_cached.item() == pytest.approx(loss_online.item(), rel=tol)
    for key in parts_online:
        assert parts_cached[key].item() == pytest.approx(parts_online[key].item(), rel=tol, abs=1e-6), key


def test_distill_from_cache_never_builds_a_teacher(caches, tmp_path, monkeypatch):
    cfg, dirs = caches

    def no_teachers(*args, **kwargs):
        raise AssertionError("a teacher was built while training from the cache")

    monkeypatch.setattr(stage, "create_teachers", no_teachers)
    artifact = stage.run(load_config(None, TINY + [f"distill.cache={dirs['float16']}"]), {}, tmp_path)
    assert artifact.extra["train"]["cache"] == str(dirs["float16"])
    assert artifact.extra["train"]["images"] == 3  # images, not the cache's 6 entries (K=2)
    assert (tmp_path / "student" / "heads.safetensors").is_file()


def test_cache_for_other_teachers_is_refused(caches, tmp_path):
    from edgedistill.errors import EdgedistillError

    _, dirs = caches
    with pytest.raises(EdgedistillError, match="re-create the cache|holds"):
        stage.prepare(load_config(None, TINY + ["teacher.extra=[]", f"distill.cache={dirs['float16']}"]), None)


def test_stored_views_are_the_regenerated_pixels_and_need_no_images(caches, tmp_path, monkeypatch):
    cfg, dirs = caches
    assert cache_mod.read_cache(dirs["stored-views"])["views_stored"] is True
    regenerated = stage.prepare(load_config(None, TINY + [f"distill.cache={dirs['float16']}"]), None).job.dataset
    stored = stage.prepare(load_config(None, TINY + [f"distill.cache={dirs['stored-views']}"]), None).job.dataset
    for j in range(6):
        a, b = stored[(j, 0)], regenerated[(j, 0)]
        assert a["view"].dtype == torch.uint8 and torch.equal(a["view"], b["view"]) and torch.equal(a["t0.patches"], b["t0.patches"])

    def no_images(*args, **kwargs):
        raise AssertionError("source images were opened although the cache stores the views")

    monkeypatch.setattr(stage, "ImageSource", no_images)
    artifact = stage.run(load_config(None, TINY + [f"distill.cache={dirs['stored-views']}"]), {}, tmp_path)
    assert artifact.extra["train"]["steps"] == 2


def test_cache_refuses_images_that_no_longer_match_and_teachers_set_differently(tmp_path):
    import shutil

    from edgedistill.data.sample_photos import bundled_photo_paths
    from edgedistill.errors import EdgedistillError

    folder = tmp_path / "images"
    folder.mkdir()
    for path in bundled_photo_paths()[1:4]:
        shutil.copy(path, folder / path.name)
    overrides = [o for o in TINY if not o.startswith("data.max_images")] + [f"data.source={folder}"]
    made = cache_mod.cache_teacher(load_config(None, overrides), tmp_path / "cache", augmentations=1)
    use = overrides + [f"distill.cache={made}"]
    assert len(stage.prepare(load_config(None, use), None).job.dataset) == 3

    with pytest.raises(EdgedistillError, match="img_size"):  # same name, other input size: other targets
        stage.prepare(load_config(None, use + ["teacher.img_size=56"]), None)
    with pytest.raises(EdgedistillError, match="dtype"):  # targets of a bf16 teacher are not the fp32 one's
        stage.prepare(load_config(None, use + ["teacher.dtype=bf16", "distill.amp=bf16"]), None)
    meta_path = made / cache_mod.META
    meta = json.loads(meta_path.read_text())
    for record in meta["teacher_configs"]:  # a cache from before teacher.dtype: its teachers ran in fp32
        del record["dtype"]
    meta_path.write_text(json.dumps(meta))
    assert len(stage.prepare(load_config(None, use), None).job.dataset) == 3
    last = sorted(folder.iterdir())[-1]
    kept = last.read_bytes()
    last.write_bytes(kept[: len(kept) // 2])  # same name, other pixels (a copy that was half done, or a rewrite)
    with pytest.raises(EdgedistillError, match="are not in .* names or sizes differ"):
        stage.prepare(load_config(None, use), None)
    last.write_bytes(kept)
    first = sorted(folder.iterdir())[0]
    shutil.copy(bundled_photo_paths()[0], folder / ("0" + first.name))  # sorts first: every index shifts by one
    first.unlink()  # the count stays 3, only the names tell
    with pytest.raises(EdgedistillError, match="are not in") as error:
        stage.prepare(load_config(None, use), None)
    assert "--store-views" in error.value.fix


def test_stored_view_cache_reports_the_unreadable_images_it_met(tmp_path):
    import shutil

    from edgedistill.data.sample_photos import bundled_photo_paths

    folder = tmp_path / "images"
    folder.mkdir()
    for path in bundled_photo_paths()[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"not an image")
    overrides = [o for o in TINY if not o.startswith("data.max_images")] + [f"data.source={folder}"]
    made = cache_mod.cache_teacher(load_config(None, overrides), tmp_path / "cache", augmentations=1, store_views=True)
    assert cache_mod.read_cache(made)["skipped_images"] == 1
    shutil.rmtree(folder)  # stored views need no source images
    artifact = stage.run(load_config(None, overrides + [f"distill.cache={made}"]), {}, tmp_path / "build")
    assert artifact.extra["train"]["skipped_images"] == 1


def test_bf16_teachers_fill_a_cache_with_finite_targets_and_say_so(tmp_path):
    # both teachers of TINY, the ViT and the extra CNN (BatchNorm), held in bf16 under CPU bf16 autocast
    cfg = load_config(None, TINY + ["teacher.dtype=bf16", "teacher.extra=[{name: resnet10t, pretrained: false, img_size: 32, weight: 0.5, dtype: bf16}]",
                                    "distill.amp=bf16"])
    made = cache_mod.cache_teacher(cfg, tmp_path / "cache", augmentations=1)
    meta = json.loads((made / cache_mod.META).read_text())
    assert [t["dtype"] for t in meta["teacher_configs"]] == ["bf16", "bf16"]
    from safetensors.torch import load_file

    shard = load_file(str(made / meta["shards"][0]["file"]))
    assert all(math.isfinite(v) for k, t in shard.items() if k.startswith("t") for v in t.float().flatten().tolist())


def test_cache_teacher_never_replaces_a_folder_that_is_not_a_cache(tmp_path):
    """cache-teacher replaces its output folder whole: a folder of other files, or the source images
    themselves, must survive a wrong OUT untouched."""
    from edgedistill.errors import EdgedistillError

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    images = tmp_path / "images"
    images.mkdir()
    for i, name in enumerate(("a.png", "b.png")):
        from PIL import Image

        Image.new("RGB", (40, 40), (60 * i, 90, 30)).save(images / name)
    cfg = load_config(None, TINY)
    with pytest.raises(EdgedistillError, match="is not a teacher cache, and cache-teacher replaces"):
        cache_mod.cache_teacher(cfg, notes, augmentations=1)
    for out in (images, tmp_path):  # the image folder itself, or a folder holding it
        with pytest.raises(EdgedistillError, match="is not a teacher cache"):
            cache_mod.check_output_folder(out, str(images))
    (tmp_path / "cache.json").write_text("{}")  # even an old cache may not hold the images it is remade from
    with pytest.raises(EdgedistillError, match="lies inside the output folder"):
        cache_mod.check_output_folder(tmp_path, str(images))
    assert (notes / "keep.txt").read_text() == "mine" and sorted(p.name for p in images.iterdir()) == ["a.png", "b.png"]


def test_a_damaged_cache_is_a_one_line_error_with_a_fix(caches, tmp_path):
    import shutil

    from edgedistill.errors import EdgedistillError

    _, dirs = caches
    damages = {
        "bad-json": lambda d: (d / "cache.json").write_text('{"format": '),
        "missing-shard": lambda d: (d / "shard-00001.safetensors").unlink(),
        "truncated-shard": lambda d: (d / "shard-00000.safetensors").write_bytes((d / "shard-00000.safetensors").read_bytes()[:40]),
        "no-shards-key": lambda d: _edit_meta(d, lambda meta: meta.pop("shards")),
        "empty-shards": lambda d: _edit_meta(d, lambda meta: meta.update(shards=[])),
        "missing-classifier": lambda d: (d / "classifier.safetensors").unlink(),
        "foreign-classifier": lambda d: shutil.copy(d / "shard-00000.safetensors", d / "classifier.safetensors"),
    }
    for name, damage in damages.items():
        broken = shutil.copytree(dirs["float16"], tmp_path / name)
        damage(broken)
        with pytest.raises(EdgedistillError) as error:
            cache_mod.CachedViews(broken, None)
            cache_mod.load_cached_classifier(broken, cache_mod.read_cache(broken))
        assert "re-create the cache" in error.value.fix, name
        assert str(broken) in error.value.one_line() and "\n" not in error.value.one_line(), name


def _edit_meta(cache_dir, change) -> None:
    meta = json.loads((cache_dir / cache_mod.META).read_text())
    change(meta)
    (cache_dir / cache_mod.META).write_text(json.dumps(meta))


def test_training_from_a_cache_names_the_data_settings_it_ignores(caches, tmp_path, capsys):
    _, dirs = caches
    stage.prepare(load_config(None, TINY + [f"distill.cache={dirs['stored-views']}", "data.source=/elsewhere", "data.auto_augment="]), None)
    said = " ".join(capsys.readouterr().err.split())
    assert "ignored: data.source='/elsewhere' (the cache has 'bundled'), data.auto_augment='' (the cache has 'rand-m9-mstd0.5')" in said
    # a seed-only cache regenerates its views from data.source when that holds its images, else from where it was made
    stage.prepare(load_config(None, TINY + [f"distill.cache={dirs['float16']}", "data.source=/elsewhere", "data.auto_augment="]), None)
    said = " ".join(capsys.readouterr().err.split())
    assert "ignored: data.auto_augment=''" in said and "data.source" not in said
    stage.prepare(load_config(None, TINY + [f"distill.cache={dirs['float16']}"]), None)  # defaults: nothing to say
    assert "ignored" not in capsys.readouterr().err


def test_seed_only_cache_reports_every_unreadable_image_a_view_fell_through(tmp_path):
    import shutil

    from edgedistill.data.augment import AugmentedViews, stand_in, unreadable_indices
    from edgedistill.data.images import ImageSource
    from edgedistill.data.sample_photos import bundled_photo_paths

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("0a.jpg", "0b.jpg"):  # sorted first: image 0's views fall through 0 and 1
        (folder / name).write_bytes(b"not an image")
    for path in bundled_photo_paths()[:3]:
        shutil.copy(path, folder / path.name)
    overrides = [o for o in TINY if not o.startswith("data.max_images")] + [f"data.source={folder}"]
    cfg = load_config(None, overrides)
    made = cache_mod.cache_teacher(cfg, tmp_path / "cache", augmentations=1)
    meta = cache_mod.read_cache(made)
    views = AugmentedViews(ImageSource(str(folder)), meta["view_size"], cfg.data)
    cached = cache_mod.CachedViews(made, views, meta)
    first = next(j for j in range(len(cached)) if int(cached.index[j]) == 0)
    item = cached[first]
    assert item["bad"] == 0 and item["bad_run"] >= 1 and cached.image_count == 5
    met = unreadable_indices(default_collate([item]), cached.image_count)  # replayed from the view's seed
    assert 0 in met and met <= {0, 1}
    used = stand_in(0, item["seed"], item["bad_run"], 5)  # the readable image the view fell through to
    assert used >= 2 and torch.equal(item["view"], views[(used, item["seed"])]["view"])


def test_a_format_1_cache_still_trains_unless_a_teacher_norms_only_its_summary(caches, tmp_path):
    import shutil

    from edgedistill.config import TeacherConfig
    from edgedistill.data.images import ImageSource
    from edgedistill.errors import EdgedistillError

    _, dirs = caches
    old = shutil.copytree(dirs["float16"], tmp_path / "old")
    _edit_meta(old, lambda meta: meta.update(format=cache_mod.FORMAT_1, image_list=ImageSource("bundled", 3).fingerprint(sizes=False)))
    assert len(stage.prepare(load_config(None, TINY + [f"distill.cache={old}"]), None).job.dataset) == 6  # names-only list, as format 1 wrote it

    meta = {"format": cache_mod.FORMAT_1, "teachers": [{"name": "vit_tiny_patch16_224"}]}
    pooled = TeacherConfig(name="vit_tiny_patch16_224", pretrained=False, model_args={"global_pool": "avg"})  # fc_norm, norm Identity
    with pytest.raises(EdgedistillError, match="made before the patch targets of vit_tiny_patch16_224 went through its final norm"):
        cache_mod.check_teachers(old, meta, [pooled])
    cache_mod.check_teachers(old, meta, [TeacherConfig(name="vit_tiny_patch16_224", pretrained=False)])


def test_a_seed_only_cache_from_before_seeded_stand_ins_is_refused_only_with_unreadable_images(caches, tmp_path):
    import shutil

    from edgedistill.errors import EdgedistillError

    _, dirs = caches
    old = shutil.copytree(dirs["float16"], tmp_path / "old")
    _edit_meta(old, lambda meta: meta.pop("stand_ins"))
    assert len(stage.prepare(load_config(None, TINY + [f"distill.cache={old}"]), None).job.dataset) == 6  # every image was readable
    _edit_meta(old, lambda meta: meta.update(skipped_images=1))
    with pytest.raises(EdgedistillError, match="views of unreadable images fell through to the next image"):
        stage.prepare(load_config(None, TINY + [f"distill.cache={old}"]), None)


def test_a_cached_image_text_projection_is_no_classifier(caches):
    """Caches made before CLIP towers' projections stopped counting as classifiers still hold one."""
    from edgedistill.config import TeacherConfig

    _, dirs = caches
    meta = cache_mod.read_cache(dirs["float16"])
    clip = TeacherConfig(name="vit_base_patch16_clip_224.openai", pretrained=False, model_args={"depth": 1})
    assert cache_mod.load_cached_classifier(dirs["float16"], meta, clip) is None
    kept = cache_mod.load_cached_classifier(dirs["float16"], meta, TeacherConfig(name="vit_tiny_patch16_224", pretrained=False))
    assert kept is not None


def test_reading_a_cache_puts_back_the_one_a_killed_cache_teacher_left_aside(caches, tmp_path):
    """cache-teacher killed between its two renames leaves the previous cache only in .NAME.old-PID: the
    next reader restores it rather than calling it no cache (and hours of teacher compute lost)."""
    import shutil
    import subprocess
    import sys

    _, dirs = caches
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    shutil.copytree(dirs["float16"], tmp_path / f".cache.old-{dead}")
    assert cache_mod.read_cache(tmp_path / "cache") == cache_mod.read_cache(dirs["float16"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
