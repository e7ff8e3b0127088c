"""A flat distillation loop (torchtune style): AdamW, cosine schedule with warm-up, optional EMA,
bf16 autocast on CUDA, atomic checkpoints with exact resume, DDP (distributed.py) or FSDP2 (fsdp.py)."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from ..config import DistillConfig
from ..errors import EdgedistillError
from ..data.augment import unit_interval, unreadable_indices, view_seed
from ..data.stream import SampleStream
from ..models.preprocess import to_model_input
from ..progress import console, progress_bar
from . import distributed, fsdp
from .masking import masked_rows, random_masks
from .metrics_log import MetricsLog
from .module import DistillModule, Objective
from .prefetch import prefetch
from .standardize import TargetStandardizer
from .targets import OnlineTargets
from .teacher_ahead import teacher_ahead
from .logit_kd import TeacherLogits
from .vl import VLTexts, unchanged
from .state import load_checkpoint, rng_state, save_checkpoint, set_rng_state

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    module: DistillModule
    dataset: object  # AugmentedViews or CachedViews, keyed by (index, seed)
    targets: Callable  # OnlineTargets or CachedTargets: (batch, view) -> [TeacherTargets]
    cfg: DistillConfig
    student_data_config: dict
    device: torch.device
    n_patches: int
    patch_level: bool = True
    norms: TargetStandardizer | None = None  # standardisation of the targets; None when distill.standardize=none
    state_dir: Path | None = None
    config_hash: str = ""
    earlier_hashes: tuple = ()  # the same job as hashed by earlier edgedistill versions: their checkpoints still resume
    ctx: distributed.DistContext = field(default_factory=distributed.DistContext)
    on_step: Callable[[int], None] | None = None  # called after each step (tests use it to slow a run down)
    vl: VLTexts | None = None  # DIME-FM's text embeddings (distill.text_embeddings); None: Proteus levels only
    logits: TeacherLogits | None = None  # the primary teacher's classifier when distill.logit_weight > 0


@dataclass
class TrainResult:
    log: MetricsLog
    start_step: int
    skipped: set


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EdgedistillError(f"distill.device is '{name}', but CUDA is not available on this machine", "set distill.device=cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EdgedistillError(f"distill.device is '{name}', but this machine has {torch.cuda.device_count()} CUDA device(s)",
                                   "set distill.device=cuda:0 (or another index it has) or auto")
    return device


def uses_bf16(cfg: DistillConfig, device: torch.device) -> bool:
    return cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")


def autocast_for(cfg: DistillConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(cfg, device) else contextlib.nullcontext()


def arithmetic(cfg: DistillConfig, device: torch.device) -> dict:
    """What decides the numbers a step computes besides the hashed config: device kind, autocast, compile.
    distill.device and distill.compile stay out of the resume hash, so a job can move machines."""
    return {"device": device.type, "bf16": uses_bf16(cfg, device), "compile": cfg.compile}


def objective_for(cfg: DistillConfig, patch_level: bool, dime_fm: bool = False) -> Objective:
    vl = (cfg.vl_weight, cfg.pvl_weight) if dime_fm else (0.0, 0.0)
    return Objective(cfg.token_weight, cfg.patch_weight if patch_level else 0.0, cfg.feature_weight, cfg.loss, *vl, cfg.logit_weight)


def step_mask(cfg: DistillConfig, objective: Objective, batch: int, n_patches: int, step: int, rank: int, device) -> torch.Tensor:
    """The step's patch mask, a pure function of (seed, step, rank) so a resumed run draws the same."""
    share = cfg.mask_share if objective.patch > 0 else 0.0
    generator = torch.Generator().manual_seed(view_seed(cfg.seed + 2, step, rank))
    return random_masks(batch, n_patches, share, cfg.mask_ratio, generator, device)


def step_loss(model, job: TrainJob, batch: dict, step: int, autocast, objective: Objective) -> tuple[torch.Tensor, dict]:
    """Targets (online or cached) for the batch, then the student's weighted Proteus (and DIME-FM) loss."""
    view = unit_interval(batch["view"].to(job.device, non_blocking=True))
    targets = batch.get("targets")  # already there when teacher_ahead ran the teacher
    if targets is None:
        with torch.no_grad(), autocast:
            targets = job.targets(batch, view)
    # in the teacher's own space: its text embeddings and its classifier live there, not in the standardised one
    undo = job.norms.token_to_teacher_space(0) if job.norms is not None else unchanged
    token_terms = ((job.vl.batch(targets[0].token, step, job.ctx.rank, undo),) if job.vl is not None else ()) + \
                  ((job.logits.batch(targets[0].token, undo),) if job.logits is not None else ())
    if job.norms is not None:
        job.norms.update(targets, job.ctx)
        targets = job.norms(targets)
    x = to_model_input(view, job.student_data_config)
    if job.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mask = step_mask(job.cfg, objective, x.shape[0], job.n_patches, step, job.ctx.rank, job.device)
    with autocast:
        return model(x, mask, targets, objective, token_terms)


def build_optimizer(module: DistillModule, cfg: DistillConfig, device: torch.device):
    """timm AdamW (no decay on norms, biases, tokens); the fused CUDA kernel when on the GPU."""
    from timm.optim import create_optimizer_v2

    extra = {"fused": True} if device.type == "cuda" else {}
    return create_optimizer_v2(module, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)


def compile_models(module: DistillModule, targets, mode: str = "default", teacher_mode: str | None = None) -> None:
    """torch.compile in place (state_dict keys unchanged): the student step's backbone and heads (the
    losses stay eager: losses.proteus_losses says why) and each online teacher's forward_features,
    the teacher under `teacher_mode` when given (the frozen teacher is most of an online step's FLOPs)."""
    module.compile(mode=mode)
    for teacher in getattr(targets, "teachers", ()):
        if not getattr(teacher.model, "_edgedistill_compiled", False):
            teacher.model.forward_features = torch.compile(teacher.model.forward_features, mode=teacher_mode or mode)
            teacher.model._edgedistill_compiled = True


# The teacher runs the same kernels without CUDA graphs, whose outputs live only until the next compiled call:
# cudagraph trees free a no-grad call's outputs when the next one starts (torch.compiler.cudagraph_mark_step_begin;
# pytorch/pytorch#160281), so the compiled student step would read overwritten targets (un-standardised ones are
# the teacher's own outputs), and a teacher one batch ahead (overlap_teacher) would overwrite those in use.
WITHOUT_CUDA_GRAPHS = {"max-autotune": "max-autotune-no-cudagraphs", "reduce-overhead": "default"}


def teacher_compile_mode(cfg: DistillConfig) -> str:
    return WITHOUT_CUDA_GRAPHS.get(cfg.compile_mode, cfg.compile_mode)


def train(job: TrainJob) -> TrainResult:
    from timm.scheduler import CosineLRScheduler

    cfg, ctx, module = job.cfg, job.ctx, job.module
    sharded = ctx.active and cfg.strategy == "fsdp"
    if sharded:
        fsdp.check_supported(cfg.ema_decay)
    module.to(job.device).train()
    if job.norms is not None:
        job.norms.to(job.device)
    if cfg.channels_last:
        module.to(memory_format=torch.channels_last)
    template = copy.deepcopy(module).cpu() if sharded else None  # unsharded shell for the final weights
    # FSDP shards parameters in place, so it comes before the optimizer sees them
    no_masked_pass = masked_rows(cfg.batch_size, job.n_patches, cfg.mask_share, cfg.mask_ratio) == 0
    model = distributed.wrap(module, ctx, job.device, find_unused=not job.patch_level or no_masked_pass, strategy=cfg.strategy)
    optimizer = build_optimizer(module, cfg, job.device)
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.steps, warmup_t=cfg.warmup_steps, warmup_lr_init=cfg.lr * 0.01,
                                  lr_min=cfg.lr * 0.01, t_in_epochs=False)
    ema = None
    if cfg.ema_decay > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(module, decay=cfg.ema_decay)
    if cfg.warmup_steps >= cfg.steps and ctx.is_main:
        log.warning("distill.warmup_steps (%d) is not below distill.steps (%d): the learning rate rises all run and never decays",
                    cfg.warmup_steps, cfg.steps)
    start_step, skipped = 0, set()
    # each rank its own random stream from here (drop path, dropout), as timm's random_seed(seed, rank); the models
    # were built before, from one seed on every rank; a resumed run restores these streams below
    torch.manual_seed(view_seed(cfg.seed + 4, 0, ctx.rank))
    checkpoint = _resumable_checkpoint(job)
    if checkpoint is not None:
        fsdp.load_full_state(module, optimizer, checkpoint["module"], checkpoint["optimizer"], sharded)
        scheduler.load_state_dict(checkpoint["scheduler"])
        if ema is not None:
            ema.load_state_dict(checkpoint["ema"])
        if job.norms is not None:
            job.norms.load_state_dict(checkpoint["norms"])
        set_rng_state(checkpoint["rng"][ctx.rank] if ctx.rank < len(checkpoint["rng"]) else checkpoint["rng"][0])
        start_step, skipped = checkpoint["step"], set(checkpoint.get("skipped", ()))
        if ctx.is_main:
            console.print(f"distill: resuming at step {start_step} of {cfg.steps} from {job.state_dir}")
            then, now = checkpoint.get("arithmetic"), arithmetic(cfg, job.device)
            if then is not None and then != now:  # allowed (a job may move machines), but say what it costs
                log.warning("resuming a checkpoint written with %s under %s: training goes on, but not bit-exact with an uninterrupted run",
                            then, now)
    if cfg.compile:
        compile_models(module, job.targets, cfg.compile_mode, teacher_compile_mode(cfg))
    stream = SampleStream(len(job.dataset), cfg.batch_size, cfg.steps, cfg.seed, start_step, ctx.rank, ctx.world)
    loader = DataLoader(job.dataset, batch_size=cfg.batch_size, sampler=stream, num_workers=cfg.num_workers,
                        pin_memory=job.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
                        persistent_workers=False, prefetch_factor=4 if cfg.num_workers else None)
    autocast = autocast_for(cfg, job.device)
    objective = objective_for(cfg, job.patch_level, job.vl is not None)
    metrics = MetricsLog(job.state_dir / "train_log.csv" if job.state_dir else None, start_step, cfg.tensorboard) if ctx.is_main else None
    job.targets.to(job.device)
    for term in (job.vl, job.logits):
        if term is not None:
            term.to(job.device)
    batches = prefetch(_count_bad(loader, skipped), job.device)
    if cfg.overlap_teacher and isinstance(job.targets, OnlineTargets):  # with a teacher cache no teacher runs
        batches = teacher_ahead(batches, job.targets, job.device, autocast)
    start, global_batch = time.perf_counter(), cfg.batch_size * ctx.world  # distill.batch_size is each process's
    rate_of = f" (all {ctx.world} processes)" if ctx.active else ""  # the logged rate is the job's, not this process's
    window, window_steps = None, 0  # loss and parts summed on the device since the last logged row
    if checkpoint is not None and checkpoint.get("log_window"):  # each rank holds the job's means: _job_means averages over ranks
        window_steps = checkpoint["log_window"]["steps"]
        window = torch.tensor(checkpoint["log_window"]["means"], device=job.device) * window_steps
    with progress_bar() if ctx.is_main else contextlib.nullcontext() as bar:
        task = bar.add_task("distill", total=cfg.steps, completed=start_step, info="") if bar else None
        for step, batch in enumerate(batches, start=start_step):
            loss, parts = step_loss(model, job, batch, step, autocast, objective)
            values = torch.stack([loss.detach(), *parts.values()]).float()
            window, window_steps = (values if window is None else window + values), window_steps + 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used, before the schedule moves on
            scheduler.step_update(step + 1)
            if ema is not None:
                ema.update(module, step=step + 1)  # the optimizer steps taken so far, as timm's train script counts
            done = step + 1
            if bar is not None:
                bar.update(task, completed=done)
            log_step = done % max(1, cfg.log_every) == 0 or done == cfg.steps
            save_step = bool(job.state_dir and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps)
            if log_step or save_step:  # every rank sees the job's mean, so all stop together on a NaN; never save one
                means = _job_means(window, window_steps, ctx)
                _check_finite(means[0], done, cfg)
            if metrics is not None and log_step:
                rate = (done - start_step) * global_batch / (time.perf_counter() - start)
                row = {"step": done, "loss": means[0], **dict(zip(parts, means[1:])), "lr": lr, "images_per_s": rate}
                metrics.append(row)
                bar.update(task, completed=done, info=f"loss {row['loss']:.4f}  {rate:.0f} img/s{rate_of}")
            if log_step:
                window, window_steps = None, 0
            if save_step:
                # the steps since the last logged row, as the job's means: the first row after a resume still averages them all
                log_window = {"means": means, "steps": window_steps} if window is not None else None
                _checkpoint(job, module, optimizer, scheduler, ema, done, skipped, sharded, log_window)
            if job.on_step is not None:
                job.on_step(done)
    if metrics is not None:
        metrics.close()
    if ema is not None:
        module.load_state_dict(ema.module.state_dict())
    if sharded:
        job.module = fsdp.unsharded_copy(template, module).to(job.device)
    return TrainResult(metrics, start_step, skipped)


def _job_means(window: torch.Tensor, steps: int, ctx: distributed.DistContext) -> list[float]:
    """Loss and parts averaged over every rank and the steps of the window: one all_reduce and one
    device sync per logged row (rank 0's own loss of one step is not the job's)."""
    summed = window.double()
    distributed.sum_tensors_([summed], ctx)
    return (summed / (steps * ctx.world)).tolist()


def _check_finite(loss: float, step: int, cfg: DistillConfig) -> None:
    if not math.isfinite(loss):
        raise EdgedistillError(f"distillation diverged: the loss is {loss} by step {step}",
                               f"lower distill.lr (now {cfg.lr}) or set distill.grad_clip > 0 (now {cfg.grad_clip}), then run again")


def _resumable_checkpoint(job: TrainJob) -> dict | None:
    """The checkpoint to resume from, once every rank found the same one and the world size matches it."""
    def starting_over(step):  # a user who changed distill.steps to train longer should not lose N steps unknowingly
        if job.ctx.is_main:
            console.print(f"distill: the checkpoint in {job.state_dir} (step {step}) was written with another config or other images, so training "
                          "starts from step 0 and replaces it (the config of a run decides its whole schedule: distill.steps, lr, data, ...)")

    hashes = (job.config_hash, *job.earlier_hashes)
    checkpoint = load_checkpoint(job.state_dir, hashes, starting_over) if job.state_dir and job.cfg.resume else None
    found = distributed.gather_objects(checkpoint["step"] if checkpoint else None, job.ctx)
    if len(set(found)) > 1:
        raise EdgedistillError(f"the ranks found different checkpoints to resume from (steps {found})",
                               f"put {job.state_dir} on a file system every node shares, or set distill.resume=false")
    if checkpoint is not None and checkpoint["world"] != job.ctx.world:
        # each rank's share of the sample stream and its RNG state belong to the world size that wrote them
        raise EdgedistillError(f"the checkpoint in {job.state_dir} was written by {checkpoint['world']} processes, this job has {job.ctx.world}",
                               f"relaunch with --nproc_per_node {checkpoint['world']} (in total), or set distill.resume=false to start over")
    return checkpoint


def _count_bad(loader, skipped: set):
    """Collect the indices of unreadable images while the batch is still on the CPU (each run a view fell through)."""
    images = loader.dataset.image_count  # where a run of failures wraps around (a cache has K entries per image)
    for batch in loader:
        bad = batch["bad"]
        if bool((bad >= 0).any()):
            skipped.update(unreadable_indices(batch, images))
        yield batch


def _checkpoint(job: TrainJob, module, optimizer, scheduler, ema, step: int, skipped: set, sharded: bool, log_window: dict) -> None:
    rngs = distributed.gather_objects(rng_state(), job.ctx)  # every rank's RNG state
    skipped = set().union(*distributed.gather_objects(sorted(skipped), job.ctx))  # each rank reads other images
    # FSDP gathers full state dicts collectively; the optimizer's is keyed by parameter name under every
    # strategy, so a DDP (or one-process) checkpoint resumes under FSDP and the other way round
    module_state, optimizer_state = fsdp.full_state(module, optimizer, sharded)
    if job.ctx.is_main:
        save_checkpoint(job.state_dir, {
            "config_hash": job.config_hash, "step": step, "world": job.ctx.world, "arithmetic": arithmetic(job.cfg, job.device),
            "module": module_state, "optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "norms": job.norms.state_dict() if job.norms is not None else None, "rng": rngs, "skipped": sorted(skipped),
            "log_window": log_window,
        })
    distributed.barrier(job.ctx)
