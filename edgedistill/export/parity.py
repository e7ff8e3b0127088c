"""Parity between torch and an exported/compiled model, measured through a backends runner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import rowwise_cosine, top1_agreement


@dataclass
class Parity:
    cosine_min: float  # worst per-sample cosine similarity
    max_abs: float  # largest absolute difference
    rel_max_abs: float  # max_abs / max |reference|
    top1_agreement: float | None = None

    def within(self, min_cosine: float, max_rel_abs: float) -> bool:
        return self.cosine_min >= min_cosine and self.rel_max_abs <= max_rel_abs

    def describe(self) -> str:
        top1 = f", top-1 agreement {self.top1_agreement:.3f}" if self.top1_agreement is not None else ""
        return f"min cosine {self.cosine_min:.6f}, max abs {self.max_abs:.3g} ({self.rel_max_abs:.3g} relative){top1}"


def compare(reference: np.ndarray, candidate: np.ndarray, reference_logits: np.ndarray | None = None, candidate_logits: np.ndarray | None = None) -> Parity:
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    scale = max(float(np.abs(reference).max()), 1e-12)
    agreement = top1_agreement(reference_logits, candidate_logits) if reference_logits is not None and candidate_logits is not None else None
    return Parity(float(rowwise_cosine(reference, candidate).min()), float(diff.max()), float(diff.max()) / scale, agreement)
