"""`edgedistill embed-text`: the primary teacher's text tower embeds a file of sentences once, for DIME-FM
(vl.py reads the rows at every step and never runs a text tower).

The sentences are a UTF-8 file, one a line; blank lines are skipped and each line's edge whitespace is
stripped. The file is read twice: once to count the sentences (the output's size is fixed up front) and
hash it, then in batches straight into the output's rows, so tens of millions of sentences are never held
in memory. The output (text_embeddings.py) appears only when every row is in (artifacts.atomic_output).
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch

from ..artifacts import atomic_output
from ..config import BuildConfig, TeacherConfig
from ..errors import EdgedistillError
from ..progress import console, progress_bar
from .text_embeddings import TextEmbeddingsWriter, make_stamp, read_stamp

DEFAULT_BATCH_SIZE = 256
NO_LOGIT_SCALE = 100.0  # CLIP clamps its learned scale at 100, where trained models end
TEXT_TOWER_EXAMPLE = "--set teacher.name=open_clip:ViT-B-16/laion2b_s34b_b88k"
SENTENCES_FIX = "pass a UTF-8 text file with one sentence per line"


def embed_sentences(cfg: BuildConfig, sentences: Path, out: Path, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Write the primary teacher's unit text embeddings of every sentence in `sentences` to `out`, in file
    order; returns the file's stamp (teacher, logit_scale, sentences_sha256, count, dim)."""
    from ..models.teacher import check_dtype_runs, teacher_configs
    from ..teacher_identity import teacher_identity
    from .trainer import autocast_for, pick_device, uses_bf16

    sentences, out = Path(sentences), Path(out)
    teacher = teacher_configs(cfg.teacher)[0]
    check_text_teacher(teacher)
    if batch_size < 1:
        raise EdgedistillError(f"--batch-size must be at least 1, got {batch_size}", "pass --batch-size N with N >= 1")
    device = pick_device(cfg.distill.device)
    check_dtype_runs(teacher, uses_bf16(cfg.distill, device))
    check_sentences_file(sentences)
    check_output(out, sentences)
    count, sentences_sha256 = count_sentences(sentences)  # before the model: a bad line fails in seconds, not after a download
    if cfg.teacher.extra:
        console.print(f"embed-text embeds with the primary teacher {teacher.name}; teacher.extra is not used")
    model, tokenizer, logit_scale = build_text_tower(teacher, device)
    autocast = autocast_for(cfg.distill, device)
    identity = teacher_identity(teacher)
    writer = None
    with atomic_output(out) as tmp, progress_bar() as bar:
        task = bar.add_task("embed-text", total=count, info="")
        for batch in sentence_batches(sentences, batch_size, count, sentences_sha256):
            rows = encode(model, tokenizer, batch, device, autocast)
            if writer is None:  # the width is the first batch's: open_clip has no one attribute for it across text towers
                writer = TextEmbeddingsWriter(tmp, make_stamp(identity, logit_scale, sentences_sha256, count, rows.shape[1]))
            writer.add(rows)
            bar.update(task, advance=len(batch))
        writer.close()
    return writer.stamp


def check_text_teacher(teacher: TeacherConfig, purpose: str = "DIME-FM") -> None:
    """Only open_clip teachers bring a text tower; the settings create_teacher refuses for them are refused here too,
    so a file made here always belongs to a teacher that distillation can build."""
    from ..models.open_clip_teacher import PREFIX
    from ..models.teacher import check_open_clip_settings

    if not teacher.name.startswith(PREFIX):
        raise EdgedistillError(f"{purpose} needs a teacher with a text tower, and teacher '{teacher.name}' has none",
                               f"use an open_clip teacher, e.g. {TEXT_TOWER_EXAMPLE}")
    check_open_clip_settings(teacher)


def check_sentences_file(sentences: Path) -> None:
    if sentences.is_dir():
        raise EdgedistillError(f"sentences file '{sentences}' is a folder", SENTENCES_FIX)
    if not sentences.is_file():
        raise EdgedistillError(f"sentences file '{sentences}' does not exist", SENTENCES_FIX)


def check_output(out: Path, sentences: Path) -> None:
    """Before any model is built: OUT is replaced only when it is missing or holds text embeddings (a typo
    naming the sentences or a model's .safetensors must not be overwritten), in a folder that takes files."""
    from ..output_files import check_replaceable, check_writable

    check_replaceable(out, "text embeddings", {"the sentences file": sentences}, lambda p: bool(read_stamp(p)), "runs/text.safetensors")
    check_writable(out, "the text embeddings")


def read_sentences(sentences: Path, digest) -> Iterator[str]:
    """Each non-blank line, stripped, in order; `digest` (a hashlib object) takes every byte of the file on the way."""
    with open(sentences, "rb") as f:
        for number, raw in enumerate(f, 1):
            digest.update(raw)
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # an editor's byte-order mark is no part of the first sentence
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise EdgedistillError(f"sentences file '{sentences}' line {number} is not UTF-8 (its byte {exc.start + 1} is {raw[exc.start]:#04x})",
                                       f"save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 '{sentences}' > sentences.utf8.txt") from None
            if text:
                yield text


def count_sentences(sentences: Path) -> tuple[int, str]:
    """(sentences, the file's sha256); refuses a line that is no UTF-8 and a file without sentences."""
    digest = hashlib.sha256()
    count = sum(1 for _ in read_sentences(sentences, digest))
    if count == 0:
        raise EdgedistillError(f"sentences file '{sentences}' holds no sentences (it is empty or all blank lines)", SENTENCES_FIX)
    return count, digest.hexdigest()


def sentence_batches(sentences: Path, batch_size: int, count: int, sha256: str) -> Iterator[list[str]]:
    """The sentences again, `batch_size` at a time: refuses a file that changed since it was counted and hashed
    (the output's size and stamp are already fixed by then)."""
    digest, batch, seen = hashlib.sha256(), [], 0
    changed = EdgedistillError(f"sentences file '{sentences}' changed while it was being embedded",
                               "run embed-text again once nothing writes to the file")
    for text in read_sentences(sentences, digest):
        seen += 1
        if seen > count:
            raise changed
        batch.append(text)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
    if seen != count or digest.hexdigest() != sha256:
        raise changed


def build_text_tower(teacher: TeacherConfig, device: torch.device):
    """(the whole open_clip model in eval mode on `device`, its tokenizer, its logit scale)."""
    from ..models.open_clip_teacher import create_open_clip_model, import_open_clip
    from ..models.teacher import TEACHER_DTYPES, teacher_seed

    with torch.random.fork_rng(devices=[]):  # random weights come out as create_primary_teacher's, leaving the global RNG be
        torch.manual_seed(teacher_seed(0))
        model, arch = create_open_clip_model(teacher.name, teacher.pretrained, teacher.checkpoint)
    tokenizer = load_tokenizer(import_open_clip(), arch, teacher.name)
    logit_scale = logit_scale_of(model, teacher.name)  # before a bf16 cast rounds it
    model.eval()
    if teacher.dtype != "fp32":  # check_dtype_runs made sure autocast runs beside it
        model.to(TEACHER_DTYPES[teacher.dtype])
    return model.to(device), tokenizer, logit_scale


def load_tokenizer(open_clip, arch: str, name: str):
    """open_clip's tokenizer for `arch`; Hugging Face tokenizers (hf-hub names, some architectures) come from the hub."""
    from ..models.hub_reach import offline_if_hub_unreachable

    try:
        with offline_if_hub_unreachable():
            return open_clip.get_tokenizer(arch)
    except ImportError as exc:
        raise EdgedistillError(f"the tokenizer of open_clip teacher '{name}' needs '{exc.name}', which is not installed",
                               f"pip install {exc.name}") from exc
    except (OSError, ValueError, RuntimeError) as exc:  # the hub unreachable and the tokenizer not in its cache, in the hub's wordings
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgedistillError(f"could not load the tokenizer of open_clip teacher '{name}': {message[:200]}",
                               "connect to the internet once (the hub caches it), or check the name") from exc


def logit_scale_of(model, name: str) -> float:
    """CLIP's exp(logit_scale), 1/temperature; a model without one gets NO_LOGIT_SCALE, said in a note."""
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        console.print(f"note: open_clip teacher '{name}' has no logit scale; the embeddings record {NO_LOGIT_SCALE:g} "
                      "(set distill.vl_temperature to choose the temperature)")
        return NO_LOGIT_SCALE
    return float(torch.as_tensor(scale).detach().float().exp())


@torch.no_grad()
def encode(model, tokenizer, batch: list[str], device: torch.device, autocast) -> torch.Tensor:
    """The text tower's embeddings [n, D] of `batch` (TextEmbeddingsWriter normalises them)."""
    tokens = tokenizer(batch).to(device)
    with autocast:
        return model.encode_text(tokens)
