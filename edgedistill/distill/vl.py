"""DIME-FM: the student's image embedding learns the primary teacher's image–text similarity structure.

s is the student's summary through the primary teacher's token head (in the teacher's own space: any
target standardisation undone), t the teacher's image embedding, u the teacher's text embeddings of
unpaired sentences (text_embeddings.py; the text tower never runs here). With all three L2-normalised
and τ the teacher's temperature:

- vl:  KL(softmax(t·uᵀ/τ) ‖ softmax(s·uᵀ/τ)) over the texts for each image (image→text) plus over the
       images of the batch for each text (text→image);
- pvl: the same with the teacher's image embeddings of the batch standing in for text (pseudo-VL).

DIME-FM's uni-modal distance term is the Proteus token level, which already regresses s onto t.
Each step draws `distill.vl_texts` sentences anew, a pure function of (seed, step, rank), so a resumed
run draws the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..data.augment import view_seed
from .losses import softmax_kl
from .text_embeddings import TextEmbeddings


def similarity_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) of the row softmaxes (mean over rows) plus that of the column softmaxes (mean over columns)."""
    return softmax_kl(student_logits, teacher_logits, 1).mean() + softmax_kl(student_logits, teacher_logits, 0).mean()


def dime_fm_losses(student: torch.Tensor, teacher: torch.Tensor, texts: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(vl, pvl) for student and teacher image embeddings [B, D] and unit text embeddings [T, D]."""
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1).detach()
    u = texts.float()
    vl = similarity_kl(s @ u.T / temperature, t @ u.T / temperature)
    pvl = similarity_kl(s @ t.T / temperature, t @ t.T / temperature)
    return vl, pvl


@dataclass
class VLBatch:
    """What one step's DIME-FM terms need beside the student's token prediction."""

    teacher: torch.Tensor  # [B, D] the primary teacher's image embedding, not standardised
    texts: torch.Tensor  # [T, D]
    temperature: float
    to_teacher_space: Callable[[torch.Tensor], torch.Tensor]  # undoes target standardisation of the token head's output

    @torch.compiler.disable  # eager, de-standardisation included: a compiled student step does not trace (or guard on) this object
    def losses(self, token_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(token_pred.device.type, enabled=False):  # cosines / 0.01 in bf16 err by ~0.1 in the logits
            vl, pvl = dime_fm_losses(self.to_teacher_space(token_pred.float()), self.teacher, self.texts, self.temperature)
        return {"vl": vl, "pvl": pvl}


def unchanged(x: torch.Tensor) -> torch.Tensor:
    """to_teacher_space when targets are not standardised."""
    return x


class VLTexts:
    """The sentences each step draws: all of them when there are no more than `per_step`. A draw reads ~per_step
    random rows of a memory map (page faults on a file larger than RAM), so the next step's is read on a
    thread while this step trains; the draw is a pure function of (seed, step, rank), so the order is moot."""

    def __init__(self, embeddings: TextEmbeddings, per_step: int, temperature: float, seed: int, steps: int | None = None):
        self.embeddings, self.per_step, self.seed, self.steps = embeddings, per_step, seed, steps
        self.temperature = temperature or embeddings.temperature  # 0: the teacher's own
        self._all = None
        self._reader, self._ahead = None, {}  # the next step's draw, by (step, rank)

    def to(self, device: torch.device) -> "VLTexts":
        self.device = device
        if self.embeddings.count <= self.per_step:  # one copy on the device for the whole run
            self._all = self.embeddings.take(None, device)
        return self

    def indices(self, step: int, rank: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(view_seed(self.seed + 5, step, rank))
        count = self.embeddings.count
        if count > 16 * self.per_step:  # a permutation of tens of millions each step costs more than the step's rare repeats
            return torch.randint(count, (self.per_step,), generator=generator).unique()
        return torch.randperm(count, generator=generator)[:self.per_step]

    def for_step(self, step: int, rank: int) -> torch.Tensor:
        if self._all is not None:
            return self._all
        if self._reader is None:
            from concurrent.futures import ThreadPoolExecutor

            self._reader = ThreadPoolExecutor(1, thread_name_prefix="edgedistill-texts")
        draw = lambda s: self.embeddings.take(self.indices(s, rank), torch.device("cpu"))  # noqa: E731
        current = self._ahead.pop((step, rank), None) or self._reader.submit(draw, step)
        last = self.steps is not None and step + 1 >= self.steps
        self._ahead = {} if last else {(step + 1, rank): self._reader.submit(draw, step + 1)}
        return current.result().to(self.device, non_blocking=True)

    def batch(self, teacher_token: torch.Tensor, step: int, rank: int, to_teacher_space) -> VLBatch:
        return VLBatch(teacher_token, self.for_step(step, rank), self.temperature, to_teacher_space)
