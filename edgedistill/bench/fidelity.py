"""Fidelity of an artifact: against the fp32 student (cosine, top-1) and against the teacher."""

from __future__ import annotations

import numpy as np

from ..metrics import rowwise_cosine, top1_agreement


def fidelity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], teacher_logits: np.ndarray | None) -> dict:
    logits = outputs.get("logits")
    return {
        "cosine_vs_fp32": float(rowwise_cosine(outputs["embedding"], reference["embedding"]).mean()),
        "top1_agreement_vs_fp32": top1_agreement(logits, reference["logits"]) if logits is not None and "logits" in reference else None,
        "top1_agreement_vs_teacher": top1_agreement(logits, teacher_logits) if logits is not None and teacher_logits is not None else None,
        "samples": int(len(outputs["embedding"])),
    }
