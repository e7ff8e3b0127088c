"""Teacher embeddings of an image source: each readable image's summary token (CLS or pooled feature) on the
teacher's evaluation view, L2-normalised, so an inner product is a cosine. Unreadable images are skipped and
counted, as everywhere else in edgedistill."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.images import ImageSource
from ..models.preprocess import eval_transform
from ..progress import progress_bar


class _EvalViews(Dataset):
    """(index, the teacher's evaluation view) of each image; the view is None for an unreadable one."""

    def __init__(self, source: ImageSource, data_config: dict):
        self.source, self.transform = source, eval_transform(data_config)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        image = self.source.load(index)
        return index, None if image is None else self.transform(image)


def _readable(batch):
    """(how many images the batch had, the readable ones' indices, their views stacked or None)."""
    kept = [(i, view) for i, view in batch if view is not None]
    return len(batch), [i for i, _ in kept], torch.stack([view for _, view in kept]) if kept else None


@torch.no_grad()
def embed_images(teacher, source: ImageSource, device: torch.device, autocast, batch_size: int, workers: int,
                 label: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the readable images, their float32 unit-length embeddings [N, D]) in source order."""
    loader = DataLoader(_EvalViews(source, teacher.data_config), batch_size=batch_size, num_workers=workers,
                        collate_fn=_readable, pin_memory=device.type == "cuda")
    indices, rows = [], []
    with progress_bar() as bar:
        task = bar.add_task(label, total=len(source), info="")
        seen = 0
        for count, batch_indices, views in loader:
            if views is not None:
                with autocast:
                    token = teacher.targets(views.to(device, non_blocking=True)).token
                rows.append(torch.nn.functional.normalize(token.float(), dim=-1).cpu().numpy())
                indices.extend(batch_indices)
            seen += count
            bar.update(task, advance=count, info=f"{seen - len(indices)} unreadable" if seen > len(indices) else "")
    return np.asarray(indices, dtype=np.int64), np.concatenate(rows) if rows else np.zeros((0, teacher.dim), np.float32)
