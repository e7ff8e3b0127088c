"""Agreement metrics between two models' outputs (numpy only), shared by export parity,
the INT8 fallback and bench fidelity."""

from __future__ import annotations

import numpy as np


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample (rows flattened)."""
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(denom, 1e-12)


def top1_agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Share of samples whose arg-max class is the same."""
    return float((logits_a.argmax(-1) == logits_b.argmax(-1)).mean())
