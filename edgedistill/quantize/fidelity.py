"""How close a quantized graph stays to the fp32 one on the same inputs: mean cosine of the main
output and top-1 agreement of the logits. The budget comes from the target profile."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..metrics import rowwise_cosine, top1_agreement

INPUT_NAME = "input"


@dataclass(frozen=True)
class Budget:
    min_cosine: float
    min_top1: float

    @classmethod
    def of(cls, target) -> "Budget":
        return cls(float(target.min_cosine), float(target.min_top1_agreement))


@dataclass(frozen=True)
class Fidelity:
    cosine: float  # mean per-sample cosine of the main output (embedding, else the first output)
    top1: float | None  # top-1 agreement of `logits` with fp32, when the model has them
    samples: int

    def meets(self, budget: Budget) -> bool:
        return self.cosine >= budget.min_cosine and (self.top1 is None or self.top1 >= budget.min_top1)

    def as_dict(self) -> dict:
        return asdict(self)


def main_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return outputs["embedding"] if "embedding" in outputs else next(iter(outputs.values()))


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> Fidelity:
    cosine = rowwise_cosine(main_output(reference), main_output(candidate))
    top1 = top1_agreement(reference["logits"], candidate["logits"]) if "logits" in reference and "logits" in candidate else None
    return Fidelity(float(cosine.mean()), top1, int(len(cosine)))


def run_model(path: Path, batch: np.ndarray, backend: str = "onnxruntime", chunk: int = 16, **options) -> dict[str, np.ndarray]:
    """All outputs of the model at `path` for `batch`, run through a backends runner."""
    from ..backends import get_backend

    with get_backend(backend).runner(Path(path), **options) as runner:
        return runner.infer_all(batch, INPUT_NAME, chunk)
