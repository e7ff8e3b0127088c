"""Stage `distill`: teachers (or a teacher cache) + images -> student/ (student.safetensors,
student.json, heads, train_log.csv). Checkpoints go to BUILD/distill_state and are removed
once the student is written (with keep_state, once the pipeline has recorded it: state_files.discard_state).
Under torchrun every rank calls run(); rank 0 writes."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..artifacts import Artifact, file_digest, write_json_atomic
from ..config import BuildConfig, DataConfig, short_hash
from ..data.augment import AugmentedViews, view_size_for
from ..data.images import ImageSource
from ..errors import EdgedistillError
from ..models.heads import ProteusHeads, canonical_classifier
from ..models.student import constructor_img_size, create_student, probe_student, weights_digest
from ..models.teacher import create_teachers, hold_for_distillation, teacher_configs
from ..models.own_args import without_own_keys
from ..progress import console
from ..ranks import is_first_rank
from . import distributed
from .masking import masked_rows
from .module import DistillModule
from .standardize import TargetStandardizer, TeacherNorms
from .class_names import classifier_classes
from .distilled import StudentParts, discard_distilled, distilled_student, keep_distilled, write_student
from .state_files import FINETUNE_SETTINGS, FINISHED, NOT_HASHED, STATE_DIR, dime_fm_on, inert_settings
from .targets import CachedTargets, OnlineTargets
from .text_embeddings import check_width, hash_stamp, open_text_embeddings
from .trainer import TrainJob, pick_device, train, uses_bf16
from .logit_kd import TeacherLogits
from .vl import VLTexts

CONFIG_SECTIONS = ("teacher", "student", "data", "distill")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resume_hash(cfg: BuildConfig, images: str = "", legacy: bool = False, by_content: bool = True) -> str:
    """What a checkpoint must share with the run that resumes it: the config and `images`, the
    dataset's identity (the sample stream's position means nothing over another image list). From a
    teacher cache, that identity (all of cache.json) stands for the data section and the cache's path:
    the cache fixed the images and views, and a run may move to a copy of it or of its images.
    `legacy`: as versions before that hashed a cache run, so their checkpoints still resume.
    `by_content`: paths whose files are hashed by content stand for that content, not their text
    (`paths_by_content`); False is the hash of versions before that, whose checkpoints still resume."""
    data = {name: cfg.hashed_section(name) for name in CONFIG_SECTIONS}
    by_cache = bool(cfg.distill.cache) and not legacy
    skipped = NOT_HASHED | inert_settings(cfg.distill) | FINETUNE_SETTINGS  # fine-tuning follows training: no checkpoint depends on it
    data["distill"] = {k: v for k, v in data["distill"].items() if k not in skipped and not (by_cache and k == "cache")}
    if by_cache:
        del data["data"]
    if images:  # without: the hash of versions that did not check the images, whose checkpoints still resume
        data["images"] = images
    if by_content and not legacy:
        paths_by_content(cfg, data)
        # DDP and FSDP write the same full state dicts (fsdp.py): a job switched to the other (after an OOM) resumes
        data["distill"].pop("strategy", None)
    return short_hash(data)


def paths_by_content(cfg: BuildConfig, data: dict) -> None:
    """A job relaunched with its images or teachers staged at another path (a node's local disk, another
    checkout) resumes: a content-stamped data.source (data/source_stamp.py) and the teachers' checkpoint
    files are hashed by content, not by the text of their paths, as the stage key does."""
    from ..data.source_stamp import CONTENT, source_stamp

    if "data" in data and cfg.data.source and cfg.data.source != "bundled":
        try:
            stamp = source_stamp(cfg.data.source, cfg.data.max_images)
        except EdgedistillError:  # the dataset itself reports it
            stamp = ""
        if stamp.startswith(CONTENT):
            data["data"] = {**data["data"], "source": stamp}

    def content(path):
        if cfg.distill.cache:  # cache.json (the dataset's identity) stands for the teachers, whose files need not be here
            return None
        return file_digest(Path(path).expanduser()) if path and Path(path).expanduser().is_file() else path

    if data["distill"].get("text_embeddings"):  # inert (left out above) unless DIME-FM trains  # by its stamp (sentences, teacher, count): hashing GBs of rows each launch would not pay
        data["distill"]["text_embeddings"] = hash_stamp(cfg.distill.text_embeddings)
    teacher = data["teacher"]
    data["teacher"] = {**teacher, "checkpoint": content(teacher.get("checkpoint")),
                       "extra": [{**e, "checkpoint": content(e.get("checkpoint"))} if isinstance(e, dict) else e for e in teacher.get("extra") or ()]}


def dataset_identity(dataset) -> str:
    """The images (their names and order) a dataset draws from. For a cache, all of cache.json: one
    re-created at the same path with other seeds, augmentation or teacher weights is another dataset."""
    meta = getattr(dataset, "meta", None)
    if meta is None:
        return dataset.source.fingerprint(sizes=False)
    return "cache " + short_hash(meta)


def earlier_identities(dataset) -> list[str]:
    """How earlier versions named the same dataset, so their checkpoints still resume."""
    meta = getattr(dataset, "meta", None)
    return [f"cache {meta['image_list']} {meta['entries']}"] if meta is not None and meta.get("image_list") else []


@dataclasses.dataclass
class Prepared:
    job: TrainJob
    teachers: list[dict]  # name, dim, patch_dim, grid, data_config per teacher
    classifier: object  # the primary teacher's canonical classifier, or None
    probe: dict
    finetune: object = None  # the labelled split step 3 fine-tunes the student on (finetune.LabelledSplit), or None


def _say_what_the_cache_decides(cfg: BuildConfig, meta: dict) -> None:
    """The cache fixed the images and their augmentation when it was made: data.* settings the user
    changed from their defaults and that differ from the cache's are ignored, and said so."""
    made = {**meta["data"], "view_size": meta["view_size"]}
    if not meta.get("views_stored"):  # a seed-only cache regenerates its views from data.source when that holds its images
        del made["source"]
    default = DataConfig()
    ignored = [f"data.{k}={getattr(cfg.data, k)!r} (the cache has {made[k]!r})" for k in made
               if getattr(cfg.data, k) != getattr(default, k) and _comparable(k, getattr(cfg.data, k)) != _comparable(k, made[k])]
    if ignored and is_first_rank():  # once per job, not once per torchrun process
        console.print(f"distill: training from teacher cache {cfg.distill.cache}, whose images and views were fixed when it was made; "
                      f"ignored: {', '.join(ignored)}. To change them, re-create the cache with these settings")


def _comparable(key: str, value):
    from .cache import absolute_source

    return absolute_source(value) if key == "source" else value


def _say_if_views_are_upsampled(cfg: BuildConfig, meta: dict, student_size: int) -> None:
    """A cache sized its views for the student it was made with; a larger student would see them upsampled."""
    if student_size > meta["view_size"] and is_first_rank():
        console.print(f"[yellow]note:[/yellow] teacher cache {cfg.distill.cache} holds {meta['view_size']} px views and the student takes "
                      f"{student_size} px, so every view is upsampled for it; re-create the cache with this student config "
                      "(cache-teacher sizes views by the student and teacher sections)")


def _teacher_sources(cfg: BuildConfig, data_config: dict):
    """(dataset, targets, teacher descriptions, classifier) from live teachers or from the cache."""
    if cfg.distill.cache:
        from .cache import CachedViews, cached_image_source, check_teachers, load_cached_classifier, read_cache

        meta = read_cache(cfg.distill.cache)
        check_teachers(cfg.distill.cache, meta, teacher_configs(cfg.teacher))
        _say_what_the_cache_decides(cfg, meta)
        _say_if_views_are_upsampled(cfg, meta, data_config["input_size"][-1])
        weights = [c.weight for c in teacher_configs(cfg.teacher)]
        data_cfg = dataclasses.replace(cfg.data, **{k: v for k, v in meta["data"].items() if k in ("auto_augment", "scale_min")})
        # stored views need no source images (they may not even be on this machine)
        views = None if meta.get("views_stored") else AugmentedViews(cached_image_source(cfg.distill.cache, meta, cfg.data.source), meta["view_size"], data_cfg)
        teachers = [{**t, "weight": w} for t, w in zip(meta["teachers"], weights)]
        return CachedViews(cfg.distill.cache, views, meta), CachedTargets([t["grid"] for t in teachers]), teachers, load_cached_classifier(cfg.distill.cache, meta, teacher_configs(cfg.teacher)[0])
    live = create_teachers(cfg.teacher)
    hold_for_distillation(live, teacher_configs(cfg.teacher), uses_bf16(cfg.distill, pick_device(cfg.distill.device)))
    size = view_size_for(cfg, [t.data_config for t in live])
    views = AugmentedViews(ImageSource(cfg.data.source, cfg.data.max_images), size, cfg.data)
    teachers = [{"name": t.name, "dim": t.dim, "patch_dim": t.patch_dim, "grid": list(t.grid), "data_config": t.data_config, "weight": t.weight} for t in live]
    classifier = canonical_classifier(copy.deepcopy(live[0].classifier).cpu()) if live[0].classifier is not None else None
    return views, OnlineTargets(live), teachers, classifier


def prepare(cfg: BuildConfig, workdir: Path | None, ctx: distributed.DistContext | None = None, on_step=None) -> Prepared:
    """Everything a training run needs, built deterministically from the config."""
    seed_everything(cfg.distill.seed)
    device = pick_device(cfg.distill.device)
    ctx = ctx or distributed.DistContext()
    if ctx.active and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    texts = _text_embeddings(cfg)  # before any model is built: a wrong file fails in a second, not after the teacher loads
    _check_task_outputs(cfg)
    split = None
    if cfg.distill.finetune_labels:  # a folder that is no labelled folder fails before any model is built too
        from .finetune import split_labelled

        split = split_labelled(Path(cfg.distill.finetune_labels).expanduser(), cfg.distill.finetune_holdout, "distill.finetune_labels")
    backbone, data_config = create_student(cfg.student)
    probe = probe_student(backbone, data_config["input_size"][-1], cfg.student)
    dataset, targets, teachers, classifier = _teacher_sources(cfg, data_config)
    if texts is not None:
        check_width(texts.stamp, teachers[0]["dim"], cfg.distill.text_embeddings)
    patch_level = cfg.distill.patch_weight > 0 and probe["maskable"]
    if patch_level and masked_rows(cfg.distill.batch_size, probe["n_patches"], cfg.distill.mask_share, cfg.distill.mask_ratio) == 0:
        patch_level = False
        if ctx.is_main:
            console.print("[yellow]note:[/yellow] distill.mask_share × batch_size or distill.mask_ratio × patches rounds to 0, "
                          "so no sample is masked and masked patch distillation is off (token and feature levels stay)")
    if cfg.distill.patch_weight > 0 and not probe["maskable"] and ctx.is_main:
        console.print(f"[yellow]note:[/yellow] student {cfg.student.name} is not a plain ViT, so masked patch distillation is off (token and feature levels stay)")
    torch.manual_seed(cfg.distill.seed + 1)  # heads start the same whether or not teachers were built (cache)
    heads = [ProteusHeads(probe["dim"], t["dim"], t["patch_dim"], probe["summary_dim"], mask_token=i == 0) for i, t in enumerate(teachers)]
    norms = None if cfg.distill.standardize == "none" else TargetStandardizer(
        [TeacherNorms(t["dim"], t["patch_dim"], cfg.distill.standardize, cfg.distill.standardize_batches) for t in teachers])
    module = DistillModule(backbone, heads[0], heads[1:], [t["weight"] for t in teachers])
    identity = dataset_identity(dataset)
    job = TrainJob(module, dataset, targets, cfg.distill, data_config, device, probe["n_patches"], patch_level, norms,
                   Path(workdir) / STATE_DIR if workdir else None, resume_hash(cfg, identity),
                   (resume_hash(cfg, identity, by_content=False), resume_hash(cfg, legacy=True),
                    *(resume_hash(cfg, earlier, legacy=True) for earlier in earlier_identities(dataset))), ctx, on_step)
    if texts is not None:
        job.vl = VLTexts(texts, cfg.distill.vl_texts, cfg.distill.vl_temperature, cfg.distill.seed, cfg.distill.steps)
    if cfg.distill.logit_weight > 0:
        if classifier is None:
            raise _no_classifier(cfg, teachers[0]["name"])
        job.logits = TeacherLogits(classifier, cfg.distill.logit_temperature)
    if split is not None:  # the classifier's classes are known now: checked before any step is trained
        from .finetune_student import check_labels

        check_labels(cfg, split, classifier, teachers[0]["name"])
    return Prepared(job, teachers, classifier, probe, split)


def _check_task_outputs(cfg: BuildConfig) -> None:
    """Teachers known to have no classifier are refused before any model is built; others once built (or read from a cache)."""
    from ..models.open_clip_teacher import PREFIX

    primary = teacher_configs(cfg.teacher)[0]
    headless = primary.name.startswith(PREFIX) or primary.model_args.get("num_classes") == 0
    if cfg.distill.logit_weight > 0 and headless:
        raise _no_classifier(cfg, primary.name)
    if cfg.distill.finetune_labels and headless:
        from .finetune_student import STEP_1_FIX

        raise EdgedistillError(f"distill.finetune_labels is set, but teacher '{primary.name}' has no classifier to fine-tune with the student",
                               STEP_1_FIX)


def _no_classifier(cfg: BuildConfig, name: str) -> EdgedistillError:
    from ..models.open_clip_teacher import PREFIX

    fix = ("for a CLIP teacher's class structure use DIME-FM: embed class prompts with `edgedistill embed-text` and set "
           "distill.text_embeddings" if name.startswith(PREFIX) else
           "use a teacher with a classification head (a timm classifier, or a fine-tuned teacher.checkpoint with "
           "teacher.model_args={num_classes: N})")
    return EdgedistillError(f"distill.logit_weight is {cfg.distill.logit_weight}, but teacher '{name}' has no classifier "
                            "whose outputs the student could match", f"set distill.logit_weight=0, or {fix}")


def _text_embeddings(cfg: BuildConfig):
    if not dime_fm_on(cfg.distill):  # a file no term reads is not opened
        return None
    from ..teacher_identity import teacher_identity

    return open_text_embeddings(cfg.distill.text_embeddings, teacher_identity(teacher_configs(cfg.teacher)[0]), None)


def deploy_heads(module: DistillModule, norms: TargetStandardizer | None) -> list[ProteusHeads]:
    """Head sets with any target standardisation folded in, so outputs live in each teacher's space."""
    sets = [copy.deepcopy(h) for h in module.head_sets()]
    if norms is not None:
        norms.cpu().fold_into(sets)
    return sets


def run(cfg: BuildConfig, inputs: dict, workdir: Path, on_step=None, keep_state: bool = False) -> Artifact:
    """`keep_state`: leave BUILD/distill_state for the caller to remove once it has recorded the student
    (state_files.discard_state); until then a re-run takes the student it finished instead of training again."""
    ctx = distributed.init(pick_device(cfg.distill.device).type)
    try:
        return _run(cfg, workdir, ctx, on_step, keep_state)
    except BaseException:
        distributed.abandon(ctx)  # torch warns of a leaked group otherwise, and the error is what matters
        raise


def _finished_student(job, final: Path, ctx: distributed.DistContext) -> dict | None:
    """student.json of the student this same job finished before it was stopped, on every rank."""
    spec = None
    with contextlib.suppress(OSError, ValueError):
        mark = json.loads((job.state_dir / FINISHED).read_text())
        if mark == _finished_mark(job, ctx):  # distill.resume=false removed it
            spec = json.loads((final / "student.json").read_text())
            spec = spec if isinstance(spec, dict) and isinstance(spec.get("train"), dict) else None
    found = distributed.gather_objects(spec is not None, ctx)
    return spec if all(found) else None


def _run(cfg: BuildConfig, workdir: Path, ctx: distributed.DistContext, on_step, keep_state: bool = False) -> Artifact:
    prepared = prepare(cfg, workdir, ctx, on_step)
    job = prepared.job
    if not cfg.distill.resume and ctx.is_main:
        shutil.rmtree(job.state_dir, ignore_errors=True)
        discard_distilled(workdir)
    distributed.barrier(ctx)
    final = Path(workdir) / "student"
    finished = _finished_student(job, final, ctx)
    if finished is not None:
        if ctx.is_main:
            console.print(f"distill: keeping {final}, which a run with these settings finished training before it stopped (no retraining)")
        distributed.shutdown(ctx)
        return _record(cfg, workdir, final, job, finished["train"], finished.get("finetune"), finished.get("classes"))
    if ctx.is_main:
        (job.state_dir / FINISHED).unlink(missing_ok=True)  # student/ is about to be replaced: that mark no longer describes it
    kept = distilled_student(workdir, job, ctx)
    parts = kept or _train(cfg, prepared, ctx)
    spec = parts.spec
    waiting = distributed.patient_group(ctx) if prepared.finetune is not None else None  # the others wait out step 3
    if ctx.is_main:
        if prepared.finetune is not None:  # step 3, on the deployed parts: the token head in the teacher's space and its classifier
            from .finetune_student import finetune_student

            if kept is None:  # the student before step 3, so other step-3 settings need no new distillation
                keep_distilled(workdir, parts, prepared.classifier, job, ctx)
            spec["finetune"] = finetune_student(cfg, prepared.finetune, parts.backbone, parts.heads.token, prepared.classifier,
                                                job.student_data_config, job.device)
        classes = spec["finetune"]["classes"] if "finetune" in spec else classifier_classes(cfg, prepared.classifier)
        if classes:  # what each of the `logits` output's columns is, so bench can score it on a labelled folder
            spec["classes"] = classes
        write_student(final, parts, prepared.classifier, spec)
        if keep_state:  # until the caller records the student, a re-run takes it rather than training again
            write_json_atomic(job.state_dir / FINISHED, _finished_mark(job, ctx))
        else:
            shutil.rmtree(job.state_dir, ignore_errors=True)  # the student is safe; checkpoints are no longer needed
    distributed.barrier(ctx, waiting)
    spec = distributed.gather_objects(spec, ctx)[0]  # rank 0's, which step 3 and the class names were added to
    distributed.shutdown(ctx)
    return _record(cfg, workdir, final, job, spec["train"], spec.get("finetune"), spec.get("classes"))


def _train(cfg: BuildConfig, prepared: Prepared, ctx: distributed.DistContext) -> StudentParts:
    """Distil; the deployable parts (on rank 0; the spec alone on the others) with their student.json."""
    job = prepared.job
    try:
        result = train(job)
    except RuntimeError as exc:
        stopped = distributed.peer_stopped(exc, ctx)
        if stopped is None:
            raise
        raise stopped from exc
    skipped = len(set().union(*distributed.gather_objects(sorted(result.skipped), ctx)))  # a file two ranks met counts once
    meta = getattr(job.dataset, "meta", None)
    if meta and meta.get("views_stored"):  # training read no image files: the cache counted the unreadable ones
        skipped += meta.get("skipped_images", 0)
    module = job.module.cpu().eval()
    primary = prepared.teachers[0]
    spec = {
        "architecture": cfg.student.name,
        "img_size": constructor_img_size(module.backbone, cfg.student.img_size),  # the input size is in data_config
        "model_args": without_own_keys(cfg.student.model_args, cfg.student.img_size, "student"),  # as the README's snippet passes them
        "num_classes": 0,
        "student_dim": prepared.probe["dim"],
        "summary_dim": prepared.probe["summary_dim"],
        "data_config": job.student_data_config,
        "teacher": {k: primary[k] for k in ("name", "dim", "patch_dim", "grid", "data_config")},
        "extra_teachers": [{k: t[k] for k in ("name", "dim", "patch_dim", "grid", "weight")} for t in prepared.teachers[1:]],
        "train": {"steps": cfg.distill.steps, "batch_size": cfg.distill.batch_size, "world_size": ctx.world, "images": job.dataset.image_count,
                  "skipped_images": skipped, "resumed_from_step": result.start_step, "patch_level": job.patch_level, "standardize": cfg.distill.standardize,
                  "cache": cfg.distill.cache, **_token_terms_record(job), "loss_first": result.log.mean_loss(first=True) if result.log else None,
                  "loss_last": result.log.mean_loss(first=False) if result.log else None, "device": str(job.device)},
    }
    if not ctx.is_main:
        return StudentParts(None, None, {}, spec, None)
    heads = deploy_heads(module, job.norms)
    extra = {f"extra_heads.{i}.{k}": v for i, h in enumerate(heads[1:]) for k, v in h.state_dict().items()}
    return StudentParts(module.backbone, heads[0], extra, spec, job.state_dir / "train_log.csv" if job.state_dir else None)


def _token_terms_record(job) -> dict:
    """What the student learned DIME-FM and task outputs from, when it did (absent otherwise, as in earlier student.json files)."""
    record = {"logit_kd": {"temperature": job.logits.temperature}} if job.logits is not None else {}
    if job.vl is None:
        return record
    stamp = job.vl.embeddings.stamp
    return {**record, "dime_fm": {"sentences": stamp["count"], "sentences_sha256": stamp["sentences_sha256"], "texts_per_step": min(job.vl.per_step, stamp["count"]),
                        "temperature": job.vl.temperature}}


def _record(cfg: BuildConfig, workdir: Path, final: Path, job, train_info: dict, finetune: dict | None = None,
            classes: list | None = None) -> Artifact:
    return Artifact.record(
        workdir, final, kind="student", name="student", precision="fp32", backend="torch",
        config_hash=cfg.section_hash(*CONFIG_SECTIONS), data_config=job.student_data_config,
        extra={"architecture": cfg.student.name, "train": train_info, "weights_sha256": weights_digest(final),
               **({"finetune": finetune} if finetune else {}), **({"classes": classes} if classes else {})},
    )


def _finished_mark(job, ctx: distributed.DistContext) -> dict:
    """What a finished student was made with: the training (resume hash and world) and, when step 3 ran, its
    settings and labelled images by content, which the resume hash leaves out (a student fine-tuned otherwise is not kept)."""
    from ..data.source_stamp import source_stamp

    mark = {"config_hash": job.config_hash, "world": ctx.world}
    if job.cfg.finetune_labels:
        mark["finetune"] = {**{k: getattr(job.cfg, k) for k in sorted(FINETUNE_SETTINGS)},
                            "labels_stamp": source_stamp(str(Path(job.cfg.finetune_labels).expanduser()))}
    return mark
