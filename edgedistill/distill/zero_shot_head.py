"""`edgedistill zero-shot-head`: the primary teacher's text tower turns class names into a zero-shot
classifier, CLIP's way (open_clip's build_zero_shot_classifier: each class's prompts embedded, normalised,
averaged and normalised again). A student distilled from an open_clip teacher deploys an `embedding`
output in the teacher's image space, so the same rows classify its images: bench.zero_shot_head scores
each deployed artifact's zero-shot top-1 on bench.eval_dir (bench/zero_shot.py).

The file is a safetensors file with one float32 tensor `weights` [C, D] of unit rows and a stamp under
the metadata key STAMP_KEY: the teacher (teacher_identity.teacher_identity), the class names (as the labelled
folder's subfolders are named: bench maps images to rows by them), the names the prompts used, and
the prompt templates. Reading the stamp needs no torch: a build with nothing to do checks the head cheaply.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..artifacts import atomic_output, safetensors_stamp, save_safetensors
from ..config import BuildConfig
from ..errors import EdgedistillError
from ..progress import console

FORMAT = "edgedistill.zero-shot-head/1"
STAMP_KEY = "edgedistill.zero-shot-head"
TENSOR = "weights"
CLASSES_FIX = "pass a labelled folder (one subfolder per class) or a UTF-8 text file with one class name per line"
SYNSET = re.compile(r"n\d{8}")


def build_zero_shot_head(cfg: BuildConfig, classes_from: Path, out: Path, templates: tuple[str, ...] = ()) -> dict:
    """Write the primary teacher's zero-shot classifier for the classes `classes_from` names to `out`; `templates`
    are format strings with one {} ("a photo of a {}."), CLIP's 80 ImageNet prompts when empty. Returns the stamp."""
    from ..models.teacher import check_dtype_runs, teacher_configs
    from ..teacher_identity import teacher_identity
    from .embed_text import build_text_tower, check_text_teacher
    from .trainer import autocast_for, pick_device, uses_bf16

    classes_from, out = Path(classes_from).expanduser(), Path(out)
    teacher = teacher_configs(cfg.teacher)[0]
    check_text_teacher(teacher, "a zero-shot head")
    device = pick_device(cfg.distill.device)
    check_dtype_runs(teacher, uses_bf16(cfg.distill, device))
    classes, prompt_names = read_classes(classes_from)  # before the model: a bad list fails in seconds, not after a download
    prompts = check_templates(templates) if templates else default_templates()
    check_output(out, classes_from)
    if cfg.teacher.extra:
        console.print(f"zero-shot-head embeds with the primary teacher {teacher.name}; teacher.extra is not used")
    model, tokenizer, logit_scale = build_text_tower(teacher, device)
    weights = class_weights(model, tokenizer, prompt_names, prompts, device, autocast_for(cfg.distill, device))
    return write_head(out, weights, teacher_identity(teacher), classes, prompt_names=prompt_names, templates=list(prompts),
                      logit_scale=logit_scale)


def write_head(out: Path, weights: "torch.Tensor", teacher: dict, classes: list[str], **made_with) -> dict:
    """Write `weights` [C, D] (unit rows, one per class) atomically with their stamp; returns the stamp."""
    stamp = {"format": FORMAT, "teacher": teacher, "classes": list(classes), "dim": int(weights.shape[1]), **made_with}
    with atomic_output(out) as tmp:
        save_safetensors({TENSOR: weights.float().contiguous()}, tmp, metadata={"format": "pt", STAMP_KEY: json.dumps(stamp)})
    return stamp


def class_weights(model, tokenizer, names: list[str], templates: tuple[str, ...], device, autocast) -> "torch.Tensor":
    """[C, D] float32 unit rows: each class's prompts through the text tower, as open_clip builds its zero-shot classifier."""
    import torch
    from open_clip import build_zero_shot_classifier

    with torch.no_grad(), autocast:
        columns = build_zero_shot_classifier(model, tokenizer, names, templates, num_classes_per_batch=10, device=device)
    return torch.nn.functional.normalize(columns.T.float(), dim=-1).cpu().contiguous()


def default_templates() -> tuple[str, ...]:
    """CLIP's 80 ImageNet prompt templates, as format strings."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)


def check_templates(templates: tuple[str, ...]) -> tuple[str, ...]:
    """Each template must put the class name in its prompt: one {} as str.format fills it ('{{}}' is a literal pair of braces)."""
    for template in templates:
        try:
            names_it = template.format("\x00") != template.format("\x01")
        except (IndexError, KeyError, ValueError):
            names_it = False
        if not names_it:
            raise EdgedistillError(f"prompt template {template!r} must hold the class name's place as {{}} and no other braces",
                                   "pass e.g. --template 'a photo of a {}.'")
    return tuple(templates)


def read_classes(source: Path) -> tuple[list[str], list[str]]:
    """(class names, the names the prompts say) from a labelled folder's subfolders (sorted, as bench.eval_dir
    reads them) or a text file, one class a line, optionally `name<TAB>prompt name`."""
    if source.is_dir():
        from ..bench.labelled import class_folders

        classes = class_folders(source)  # as bench.eval_dir's classes are named
        spoken = [None] * len(classes)
    elif source.is_file():
        classes, spoken = _class_lines(source)
    else:
        raise EdgedistillError(f"classes '{source}' does not exist", CLASSES_FIX)
    if len(classes) < 2:
        raise EdgedistillError(f"classes '{source}' names {len(classes)} class(es); a classifier needs at least 2", CLASSES_FIX)
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise EdgedistillError(f"classes '{source}' names {', '.join(repeated[:5])} more than once", "name each class once")
    return classes, [said or prompt_name(name) for name, said in zip(classes, spoken)]


def _class_lines(source: Path) -> tuple[list[str], list[str | None]]:
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise EdgedistillError(f"classes file '{source}' is not UTF-8", "save it as UTF-8") from None
    classes, spoken = [], []
    for line in filter(None, (line.strip() for line in lines)):
        name, _, said = line.partition("\t")
        classes.append(name.strip())
        spoken.append(said.strip() or None)
    return classes, spoken


def prompt_name(name: str) -> str:
    """What a prompt calls a class: CLIP's own name for an ImageNet-1k synset folder (n01440764 -> tench), else the
    folder name with underscores as spaces."""
    if SYNSET.fullmatch(name):
        known = _imagenet_names().get(name)
        if known:
            return known
    return name.replace("_", " ")


def _imagenet_names() -> dict[str, str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    return dict(zip(ImageNetInfo("imagenet-1k").label_names(), IMAGENET_CLASSNAMES))


def read_stamp(path: Path) -> dict:
    """The stamp of a zero-shot head this command wrote; {} for any other file."""
    stamp = safetensors_stamp(path, STAMP_KEY)
    return stamp if stamp.get("format") == FORMAT else {}


def check_output(out: Path, classes_from: Path) -> None:
    """Before any model is built: OUT is a .safetensors path that is not the class list, and replaces only a head."""
    from ..output_files import check_replaceable, check_suffix, check_writable

    check_suffix(out, ".safetensors", "zero-shot head")
    check_replaceable(out, "zero-shot head", {"the classes": classes_from}, lambda p: bool(read_stamp(p)), "runs/zero_shot_head.safetensors")
    check_writable(out, "the zero-shot head")
