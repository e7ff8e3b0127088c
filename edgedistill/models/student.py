"""Students: any timm model built headless; saved as student.safetensors + student.json.

student.safetensors holds only the timm backbone, so
`timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=..., custom_load=False), **model_args)`
(custom_load=False: timm releases before 1.0.31 otherwise route ViT files to the JAX .npz loader)
loads it with no edgedistill code. The distillation heads and the teacher's classifier (used
for top-1 agreement) sit beside it in heads.safetensors.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..artifacts import save_safetensors, sha256_file
from ..config import StudentConfig
from ..errors import EdgedistillError
from .heads import ProteusHeads, build_classifier, describe_classifier
from .preprocess import resolve_data_config
from .timm_create import create_timm_model, runs_on_its_input

STUDENT_WEIGHTS = "student.safetensors"
STUDENT_SPEC = "student.json"
HEADS_WEIGHTS = "heads.safetensors"


def create_backbone(name: str, img_size: int | None, model_args: dict, pretrained: bool = False, **extra) -> nn.Module:
    """A headless timm model (num_classes=0); img_size is passed where the family accepts it."""
    return create_timm_model("student", name, pretrained, img_size, model_args, num_classes=0, **extra)


def constructor_img_size(model: nn.Module, img_size: int | None) -> int | None:
    """img_size as the family's constructor took it, None where it takes none (fastvit_*, efficientvit_b*,
    resnets): what student.json records, so the README's plain-timm snippet works for every family."""
    parameters = inspect.signature(type(model).__init__).parameters.values()
    takes = any(p.name == "img_size" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return img_size if takes else None


def create_student(cfg: StudentConfig) -> tuple[nn.Module, dict]:
    model = create_backbone(cfg.name, cfg.img_size, dict(cfg.model_args))
    return model, resolve_data_config(model, cfg.img_size)


def student_dim(model: nn.Module) -> int:
    return int(getattr(model, "num_features", getattr(model, "embed_dim", 0)))


@torch.no_grad()
def probe_student(model: nn.Module, img_size: int, cfg: StudentConfig | None = None) -> dict:
    """Token width, summary width, token grid and whether it is a ViT (maskable, prefix tokens)."""
    from .tokens import is_maskable, patch_tokens

    drop = getattr(model, "patch_drop", None)
    if drop is not None and getattr(drop, "prob", 0) > 0:  # timm's PatchDropout: a random, shuffled subset of tokens in training
        raise EdgedistillError(f"student patch_drop_rate {drop.prob} drops and shuffles patch tokens, so they no longer lie on the grid "
                               "the teacher's patch targets are matched to",
                               "remove patch_drop_rate from student.model_args (drop_path_rate regularises without moving tokens)")
    was_training = model.training
    model.eval()
    name, model_args = (cfg.name, cfg.model_args) if cfg is not None else (type(model).__name__, {})
    with runs_on_its_input("student", name, img_size, model_args):
        features = model.forward_features(torch.zeros(1, 3, img_size, img_size))
    patches, grid = patch_tokens(model, features)  # first: it refuses outputs that are no token or feature map
    summary = summary_token(model, features)
    if summary.ndim != 2:  # e.g. a ViT with global_pool='' keeps every token: the token level needs one vector
        raise EdgedistillError(f"student '{type(model).__name__}' pools to shape {tuple(summary.shape)}, not one vector per image",
                               "keep the family's default global_pool in student.model_args (token, avg, map)")
    model.train(was_training)
    return {"dim": patches.shape[-1], "summary_dim": summary.shape[-1], "grid": tuple(grid), "n_patches": patches.shape[1],
            "spatial_map": features.ndim == 4, "maskable": is_maskable(model) and features.ndim == 3}


def save_student(out_dir: Path, backbone: nn.Module, heads: ProteusHeads, classifier: nn.Sequential | None, spec: dict,
                 extra_tensors: dict | None = None) -> None:
    """Write the three student files into `out_dir` (which the caller moves into place atomically).

    `extra_tensors` (e.g. the head sets of further teachers) go into heads.safetensors as given.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors(backbone.state_dict(), out_dir / STUDENT_WEIGHTS, metadata={"format": "pt"})
    head_state = {f"heads.{k}": v for k, v in heads.state_dict().items()}
    head_state.update(extra_tensors or {})
    if classifier is not None:
        head_state.update({f"classifier.{k}": v for k, v in classifier.state_dict().items()})
        spec = {**spec, "classifier": describe_classifier(classifier)}
    save_safetensors(head_state, out_dir / HEADS_WEIGHTS)
    (out_dir / STUDENT_SPEC).write_text(json.dumps(spec, indent=2) + "\n")


def weights_digest(student_dir: Path) -> str:
    """The deployable model's identity: the backbone's and the heads' weights, not the folder (its
    train_log.csv holds wall-clock rates), so a student trained again to the same weights is the same."""
    digest = hashlib.sha256()
    for name in (STUDENT_WEIGHTS, HEADS_WEIGHTS):
        digest.update(sha256_file(Path(student_dir) / name).encode())
    return digest.hexdigest()


def read_spec(student_dir: Path) -> dict:
    path = Path(student_dir) / STUDENT_SPEC
    if not path.is_file():
        raise EdgedistillError(f"'{student_dir}' holds no {STUDENT_SPEC}", "point at a folder written by `edgedistill distill`")
    return json.loads(path.read_text())


def load_student(student_dir: Path) -> tuple[nn.Module, ProteusHeads, nn.Sequential | None, dict]:
    """Backbone, heads, classifier (or None) and spec, as written by save_student."""
    student_dir = Path(student_dir)
    spec = read_spec(student_dir)
    backbone = create_backbone(
        spec["architecture"], spec.get("img_size"), spec.get("model_args", {}),
        pretrained=True, pretrained_cfg_overlay={"file": str(student_dir / STUDENT_WEIGHTS), "custom_load": False},
    )
    heads = ProteusHeads(spec["student_dim"], spec["teacher"]["dim"], spec["teacher"]["patch_dim"], spec.get("summary_dim"))
    state = load_file(str(student_dir / HEADS_WEIGHTS))
    heads.load_state_dict({k[len("heads."):]: v for k, v in state.items() if k.startswith("heads.")})
    classifier = None
    if spec.get("classifier"):
        classifier = build_classifier(spec["classifier"])
        classifier.load_state_dict({k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")})
    return backbone.eval(), heads.eval(), classifier, spec


def summary_token(backbone: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The student's pooled summary (CLS or average), exactly as timm's head would pool it."""
    return backbone.forward_head(tokens, pre_logits=True)
