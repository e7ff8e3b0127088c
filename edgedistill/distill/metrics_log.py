"""Training logs: train_log.csv (appended per step, so a killed run keeps it) and TensorBoard when installed."""

from __future__ import annotations

import csv
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path | None, resume_step: int = 0, tensorboard: bool = True):
        self.path = path
        self.rows: list[dict] = []
        self.writer = None
        if path is None:  # in memory only (no build folder: benchmarks, tests)
            return
        if resume_step and path.is_file():  # keep the rows up to the checkpoint, drop the replayed ones
            with open(path, newline="") as handle:
                self.rows = [self._parse(r) for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        elif path.exists():
            path.unlink()
        self._rewrite()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(path.parent / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:  # optional: `pip install tensorboard`
                self.writer = None

    @staticmethod
    def _parse(row: dict) -> dict:
        return {k: (int(v) if k == "step" else float(v)) for k, v in row.items()}

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as handle:
            if self.rows:
                writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)

    def append(self, row: dict) -> None:
        header = not self.rows
        self.rows.append(row)
        if self.path is None:
            return
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            if header:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "step":
                    self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def mean_loss(self, first: bool, window: int = 10) -> float:
        window = max(1, min(window, len(self.rows) // 2))  # short logs: first and last halves never overlap
        rows = self.rows[:window] if first else self.rows[-window:]
        return sum(r["loss"] for r in rows) / max(1, len(rows))
