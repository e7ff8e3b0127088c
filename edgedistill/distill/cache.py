"""Teacher cache (a "reinforced dataset", as in TinyViT/MobileCLIP): teacher outputs for K
augmentations of every image, stored once, so distillation no longer runs the teacher.

Layout of the cache folder (written atomically):
  cache.json                 teachers (name, dims, grid, data config), images, K, view size, data config, shards
  shard-00000.safetensors    index, seed (int64 [M]); t{i}.token [M, D] and t{i}.patches [M, N, D'] (fp16);
                             view (uint8 [M, 3, S, S]) when the views are stored
  classifier.safetensors     the primary teacher's token->logits classifier, when it has one
A view is stored as its augmentation seed: the view is a pure function of (image index, seed),
so training regenerates exactly the pixels the teacher saw. Decoding and augmenting then still
costs CPU time every epoch; with `store_views` the uint8 pixels themselves are stored (S²·3 bytes
per view, about 30% on top of ViT-L/14 targets), training reads them instead, and the source
images are no longer needed.
"""

from __future__ import annotations

import bisect
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from torch.utils.data import DataLoader, Dataset

from ..artifacts import atomic_output, restore_interrupted, save_safetensors
from ..folder_lock import FolderLock
from ..teacher_identity import comparable_identities, teacher_identity
from ..config import CACHE_DTYPES, COMPATIBLE_ADDITIONS, BuildConfig
from ..data.augment import AugmentedViews, unit_interval, view_seed, view_size_for
from ..data.images import ImageSource
from ..errors import EdgedistillError
from ..progress import console, progress_bar
from ..ranks import is_first_rank
from .targets import OnlineTargets
from .trainer import autocast_for, pick_device, uses_bf16

FORMAT = "edgedistill.teacher-cache/2"  # 2: patch targets of fc_norm teachers (BEiT, EVA) are normed; image sizes fingerprinted
FORMAT_1 = "edgedistill.teacher-cache/1"  # still read: its targets are right for every teacher without an fc_norm
META = "cache.json"
STAND_INS = "seeded"  # how a view of an unreadable image picks its stand-in (augment.stand_in); before: the next image
META_KEYS = ("images", "augmentations", "entries", "view_size", "dtype", "seed", "shards", "views_stored",
             "data", "teachers", "classifier")  # what cache_teacher writes and training reads
DAMAGED_FIX = "re-create the cache with `edgedistill cache-teacher` (it writes atomically, so a copy or a disk went wrong)"


def cache_teacher(cfg: BuildConfig, out_dir: Path, augmentations: int, shard_size: int = 1024, dtype: str = "float16",
                  store_views: bool = False) -> Path:
    """Run every configured teacher on K seeded augmentations of each image; write the cache folder."""
    if augmentations < 1:
        raise EdgedistillError(f"augmentations must be at least 1, got {augmentations}", "pass --augmentations K with K >= 1")
    if dtype not in CACHE_DTYPES:
        raise EdgedistillError(f"cannot store teacher outputs as '{dtype}'", f"pass --dtype {' or '.join(CACHE_DTYPES)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank would compute the whole cache and race to write it
        raise EdgedistillError("cache-teacher runs as one process, not under torchrun",
                               "run `edgedistill cache-teacher` without torchrun (it uses one GPU); train from the cache with torchrun")
    out_dir, device = Path(out_dir), pick_device(cfg.distill.device)
    check_output_folder(out_dir, cfg.data.source)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # beside the folder, which is replaced whole: a second cache-teacher into it would redo the hours of
    # teacher compute and race this one's final renames
    with FolderLock(out_dir.parent / f".{out_dir.name}.lock", f"teacher cache '{out_dir}'",
                    "wait for that cache-teacher to finish, or write the cache to another folder"):
        return _cache_teacher(cfg, out_dir, device, augmentations, shard_size, dtype, store_views)


def _cache_teacher(cfg: BuildConfig, out_dir: Path, device: torch.device, augmentations: int, shard_size: int, dtype: str,
                   store_views: bool) -> Path:
    from ..models.heads import canonical_classifier
    from ..models.teacher import create_teachers, hold_for_distillation, teacher_configs

    teachers = create_teachers(cfg.teacher)
    hold_for_distillation(teachers, teacher_configs(cfg.teacher), uses_bf16(cfg.distill, device))
    source = ImageSource(cfg.data.source, cfg.data.max_images)
    size = view_size_for(cfg, [t.data_config for t in teachers])
    views = AugmentedViews(source, size, cfg.data)
    seed = cfg.distill.seed + 3
    keys = [(i, view_seed(seed, i, k)) for i in range(len(views)) for k in range(augmentations)]
    loader = DataLoader(views, batch_size=cfg.distill.batch_size, sampler=keys, num_workers=cfg.distill.num_workers)
    online, autocast, store = OnlineTargets(teachers).to(device), autocast_for(cfg.distill, device), getattr(torch, dtype)
    shards, pending, bad = [], {}, set()
    with atomic_output(out_dir) as tmp:
        tmp.mkdir(parents=True)

        def flush():
            if pending:
                name = f"shard-{len(shards):05d}.safetensors"
                tensors = {k: torch.cat(v) for k, v in pending.items()}
                save_safetensors(tensors, tmp / name)
                shards.append({"file": name, "entries": int(tensors["index"].shape[0])})
                pending.clear()

        with progress_bar() as bar:
            task = bar.add_task("cache-teacher", total=len(keys), info=f"{len(teachers)} teacher(s), K={augmentations}")
            for batch in loader:
                bad.update(int(i) for i in batch["bad"] if int(i) >= 0)
                view = unit_interval(batch["view"].to(device))
                with torch.no_grad(), autocast:
                    targets = online(batch, view)
                pending.setdefault("index", []).append(batch["index"].long())
                pending.setdefault("seed", []).append(batch["seed"].long())
                if store_views:
                    pending.setdefault("view", []).append(batch["view"])  # uint8, as the DataLoader delivers it
                for i, t in enumerate(targets):
                    pending.setdefault(f"t{i}.token", []).append(storable(t.token, store, teachers[i].name))
                    pending.setdefault(f"t{i}.patches", []).append(storable(t.patches, store, teachers[i].name))
                if sum(x.shape[0] for x in pending["index"]) >= shard_size:
                    flush()
                bar.update(task, advance=view.shape[0])
            flush()
        classifier = canonical_classifier(teachers[0].classifier)
        if classifier is not None:
            save_safetensors(classifier.state_dict(), tmp / "classifier.safetensors")
        meta = {
            "format": FORMAT, "images": len(views), "augmentations": augmentations, "entries": len(keys), "view_size": size,
            "dtype": dtype, "seed": seed, "skipped_images": len(bad), "stand_ins": STAND_INS, "subset": "spread", "shards": shards, "views_stored": store_views,
            "image_list": source.fingerprint(), "teacher_configs": [teacher_identity(c) for c in teacher_configs(cfg.teacher)],
            "data": {"source": absolute_source(cfg.data.source), "max_images": cfg.data.max_images, "auto_augment": cfg.data.auto_augment, "scale_min": cfg.data.scale_min},
            "teachers": [{"name": t.name, "dim": t.dim, "patch_dim": t.patch_dim, "grid": list(t.grid), "data_config": t.data_config, "weight": t.weight}
                         for t in teachers],
            "classifier": _describe(classifier),
        }
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    console.print(f"cache-teacher: {len(keys)} views of {len(views)} images ({len(bad)} unreadable) -> {out_dir}")
    return out_dir


def storable(features: torch.Tensor, store: torch.dtype, teacher: str) -> torch.Tensor:
    """Teacher outputs as stored, refused when not finite: an fp16 overflow would store inf silently, and
    training would then fail hours later as a divergence blamed on the learning rate."""
    stored = features.to(store)
    if not bool(torch.isfinite(stored).all()):
        if not bool(torch.isfinite(features).all()):
            raise EdgedistillError(f"teacher {teacher} gives NaN or inf outputs, which a cache must not hold",
                                   "check the teacher's weights (teacher.checkpoint) and teacher.dtype")
        peak, limit = features.abs().max().item(), torch.finfo(store).max
        raise EdgedistillError(f"teacher {teacher} outputs reach {peak:.4g}, beyond {store}'s range ({limit:.5g}), so the cache would hold inf",
                               "store them with --dtype bfloat16 or --dtype float32")
    return stored.cpu()


def absolute_source(source: str) -> str:
    """The source as an absolute path, so a cache made from a relative one serves from any working folder."""
    return source if source == "bundled" else str(Path(source).expanduser().absolute())


def check_output_folder(out_dir: Path, source: str) -> None:
    """cache-teacher replaces its output folder whole: refuse one that holds anything but a cache,
    or the images the cache is made from."""
    if out_dir.exists() and not (out_dir / META).is_file() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise EdgedistillError(f"'{out_dir}' exists and is not a teacher cache, and cache-teacher replaces its output folder",
                               "choose a new or empty folder (an existing cache is replaced)")
    images = Path(source).expanduser().resolve() if source and source != "bundled" else None
    if images is not None and (images == out_dir.resolve() or out_dir.resolve() in images.parents):
        raise EdgedistillError(f"data.source '{source}' lies inside the output folder '{out_dir}', which cache-teacher replaces",
                               "write the cache to a folder outside the images")


def _describe(classifier) -> dict | None:
    from ..models.heads import describe_classifier

    return describe_classifier(classifier) if classifier is not None else None


def read_cache(cache_dir: str | Path) -> dict:
    restore_interrupted(Path(cache_dir))  # a cache-teacher killed while replacing it left the previous one aside
    path = Path(cache_dir) / META
    if not path.is_file():
        raise EdgedistillError(f"'{cache_dir}' is not a teacher cache (no {META})", "create one with `edgedistill cache-teacher`")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgedistillError(f"teacher cache '{cache_dir}' has an unreadable {META}: {exc}", DAMAGED_FIX) from exc
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, FORMAT_1):
        found = meta.get("format") if isinstance(meta, dict) else None
        raise EdgedistillError(f"teacher cache '{cache_dir}' has format {found!r}, expected {FORMAT}", "re-create it with this edgedistill version")
    absent = [key for key in META_KEYS if key not in meta]
    shards = meta.get("shards")
    if absent or not isinstance(shards, list) or not shards or not all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("entries"), int) for s in shards):
        lacks = f"lacks {', '.join(absent)}" if absent else "lists no shards (file, entries)"
        raise EdgedistillError(f"teacher cache '{cache_dir}' has a damaged {META}: it {lacks}", DAMAGED_FIX)
    missing = [shard["file"] for shard in meta["shards"] if not (Path(cache_dir) / shard["file"]).is_file()]
    if missing:
        raise EdgedistillError(f"teacher cache '{cache_dir}' lacks {len(missing)} of its {len(meta['shards'])} shards ({missing[0]} first)", DAMAGED_FIX)
    return meta


def check_teachers(cache_dir, meta: dict, configs: list) -> None:
    """Refuse a cache made by other teachers: its targets would train the student towards the wrong model."""
    wanted, held = [c.name for c in configs], [t["name"] for t in meta["teachers"]]
    if held != wanted:
        raise EdgedistillError(f"teacher cache '{cache_dir}' holds {held}, the config asks for {wanted}",
                               "re-create the cache with this teacher config, or unset distill.cache")
    stale = [c.name for c in configs if meta["format"] == FORMAT_1 and _norms_only_its_summary(c)]
    if stale:
        raise EdgedistillError(f"teacher cache '{cache_dir}' was made before the patch targets of {stale[0]} went through its final norm (fc_norm)",
                               "re-create the cache with `edgedistill cache-teacher`")
    for recorded, c in zip(meta.get("teacher_configs") or [], configs):  # caches before this check lack the record
        current = teacher_identity(c)
        recorded = {"dtype": COMPATIBLE_ADDITIONS["teacher.dtype"], **recorded}  # caches from before teacher.dtype ran their teachers in fp32
        recorded, current = comparable_identities(recorded, current)
        if recorded != current:
            differ = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
            values = "; ".join(f"{k}: {recorded.get(k)!r} in the cache, {current.get(k)!r} now" for k in differ if k != "checkpoint_sha256")
            what = (f"an earlier {c.checkpoint} (the checkpoint's content has changed since)" if differ == ["checkpoint_sha256"]
                    else f"{c.name} set differently ({values or ', '.join(differ)})")
            raise EdgedistillError(f"teacher cache '{cache_dir}' was made with {what}",
                                   "re-create the cache with this teacher config, or unset distill.cache")


def timm_shell(c):
    """The timm model a teacher config names, built on the meta device (no weights, no download), to
    tell what the cache's teacher was like; None for the offline and open_clip teachers, which are no
    timm names, and False when it cannot be built there."""
    from ..config import OFFLINE_TEACHER
    from ..models.open_clip_teacher import PREFIX
    from ..models.timm_create import create_timm_model

    if c.name == OFFLINE_TEACHER or c.name.startswith(PREFIX):
        return None
    try:
        with torch.device("meta"):
            return create_timm_model("teacher", c.name, False, c.img_size, c.model_args)
    except Exception:
        return False


def _norms_only_its_summary(c) -> bool:
    """Whether a teacher config names a timm model whose final norm is its pooled-only fc_norm. One that
    cannot be built on the meta device counts as such (its format-1 cache is refused)."""
    from ..models.teacher import pooled_only_norm

    model = timm_shell(c)
    return model is False or (model is not None and pooled_only_norm(model) is not None)


def _head_is_a_projection(c) -> bool:
    """Whether a teacher config's head is an image-text projection, not a classifier. One that cannot be
    built on the meta device keeps what the cache holds."""
    from ..models.teacher import classifier_from_token

    model = timm_shell(c)
    return model is not None and model is not False and getattr(model, "num_classes", 0) > 0 and classifier_from_token(model, c.model_args) is None


def cached_image_source(cache_dir, meta: dict, configured: str | None = None) -> ImageSource:
    """The images a seed-only cache regenerates its views from: those at `configured` (data.source) when
    they are the cache's, else those where the cache was made. Refused when index i no longer names the
    image the teacher saw (a file added, removed or renamed shifts every index after it; one rewritten
    since holds other pixels). The check is by names relative to the folder, so a copy elsewhere (a
    node's local disk) serves as well as the original."""
    made_at, recorded = meta["data"]["source"], meta.get("image_list")
    if meta.get("skipped_images") and meta.get("stand_ins") != STAND_INS:  # its views of those images would regenerate from others
        raise EdgedistillError(f"teacher cache '{cache_dir}' was made when views of unreadable images fell through to the next image, "
                               "and views are now regenerated from seeded stand-ins", "re-create the cache with `edgedistill cache-teacher`")
    for place in dict.fromkeys(p for p in (configured, made_at) if p):
        try:
            source = ImageSource(place, meta["data"]["max_images"], subset=meta.get("subset", "first"))  # caches before the spread took the first N
        except EdgedistillError:  # not there (any more), or not images
            continue
        if len(source) == meta["images"] and (recorded is None or source.fingerprint(sizes=meta["format"] == FORMAT) == recorded):
            return source
    where = f"data.source '{configured}' nor in '{made_at}'" if configured and configured != made_at else f"'{made_at}' any more"
    raise EdgedistillError(f"the {meta['images']} images teacher cache '{cache_dir}' was made from are not in {where} "
                           "(the count, names or sizes differ)",
                           "point data.source at those images, re-create the cache, or make caches with --store-views so they need no source images")


def load_cached_classifier(cache_dir: str | Path, meta: dict, primary=None):
    """The primary teacher's classifier the cache stored; None when it has none, or when what an
    earlier version stored is a CLIP tower's image-text projection, which no teacher built now has."""
    from safetensors.torch import load_file

    from ..models.heads import build_classifier

    if not meta.get("classifier"):
        return None
    if primary is not None and _head_is_a_projection(primary):
        if is_first_rank():
            console.print(f"note: teacher cache {cache_dir} stores {primary.name}'s image-text projection as a classifier; "
                          "it is left out, as a teacher built now has none (no logits output, no top-1 vs teacher)")
        return None
    classifier = build_classifier(meta["classifier"])
    try:
        classifier.load_state_dict(load_file(str(Path(cache_dir) / "classifier.safetensors")))
    except Exception as exc:  # missing, truncated, or another file's tensors; safetensors has its own error types
        raise EdgedistillError(f"teacher cache '{cache_dir}' has a damaged classifier.safetensors: {str(exc).strip().splitlines()[0][:160]}",
                               DAMAGED_FIX) from exc
    return classifier


class CachedViews(Dataset):
    """Cache entry j -> its view (stored, or regenerated from its image index and seed) plus stored targets."""

    def __init__(self, cache_dir: str | Path, views: AugmentedViews | None, meta: dict | None = None):
        self.dir, self.views = Path(cache_dir), views
        self.meta = meta or read_cache(cache_dir)
        self.n_teachers = len(self.meta["teachers"])
        self.starts, total = [], 0
        index, seed = [], []
        for shard in self.meta["shards"]:
            self.starts.append(total)
            total += shard["entries"]
            try:
                with safe_open(str(self.dir / shard["file"]), framework="pt") as f:
                    index.append(f.get_tensor("index"))
                    seed.append(f.get_tensor("seed"))
            except Exception as exc:  # safetensors raises its own error type for a truncated or foreign file
                raise EdgedistillError(f"teacher cache '{cache_dir}' has a damaged shard {shard['file']}: {str(exc).splitlines()[0]}", DAMAGED_FIX) from exc
            if index[-1].shape[0] != shard["entries"]:
                raise EdgedistillError(f"teacher cache '{cache_dir}' shard {shard['file']} holds {index[-1].shape[0]} entries, {META} says {shard['entries']}", DAMAGED_FIX)
        self.index, self.seed = torch.cat(index).numpy(), torch.cat(seed).numpy()  # compact at ImageNet x K scale
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.index)

    @property
    def image_count(self) -> int:
        """How many source images the entries' indices refer to (where a run of unreadable ones wraps around)."""
        return len(self.views) if self.views is not None else int(self.index.max(initial=-1)) + 1

    def _row(self, j: int) -> tuple[object, int]:
        s = bisect.bisect_right(self.starts, j) - 1
        if s not in self._handles:  # opened lazily: one set of memory maps per DataLoader worker
            self._handles[s] = safe_open(str(self.dir / self.meta["shards"][s]["file"]), framework="pt")
        return self._handles[s], j - self.starts[s]

    def __getitem__(self, key) -> dict:
        j = key[0] if isinstance(key, (tuple, list)) else key
        index, seed = int(self.index[j]), int(self.seed[j])
        handle, row = self._row(j)
        if self.meta.get("views_stored"):  # unreadable images were replaced (and counted) when caching
            item = {"view": handle.get_slice("view")[row], "index": index, "seed": seed, "bad": -1, "bad_run": 0}
        else:  # regenerated: reports the unreadable images it fell through, as AugmentedViews does
            item = self.views[(index, seed)]
        for i in range(self.n_teachers):
            item[f"t{i}.token"] = handle.get_slice(f"t{i}.token")[row]
            item[f"t{i}.patches"] = handle.get_slice(f"t{i}.patches")[row]
        return item

    def __getstate__(self):
        return {**self.__dict__, "_handles": {}}
