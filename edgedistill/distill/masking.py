"""Random patch masks for the patch-level objective (Proteus: half the batch, half the patches)."""

from __future__ import annotations

import torch


def masked_rows(batch: int, n_patches: int, share: float, ratio: float) -> int:
    """M, the samples per step that get a masked pass: 0 when share * batch or ratio * n rounds to 0,
    which leaves the patch head and mask token without gradients (DDP must be told)."""
    return int(round(share * batch)) if int(round(ratio * n_patches)) else 0


def random_masks(batch: int, n_patches: int, share: float, ratio: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Bool [M, n_patches] for the first M = round(share*batch) samples, each with round(ratio*n) masked
    patches. M is a host-side number, fixed per run, so the masked pass has a static shape."""
    per_sample = int(round(ratio * n_patches))
    masked_samples = masked_rows(batch, n_patches, share, ratio)
    mask = torch.zeros(masked_samples, n_patches, dtype=torch.bool)
    if masked_samples:
        scores = torch.rand(masked_samples, n_patches, generator=generator)
        chosen = scores.argsort(dim=1)[:, :per_sample]
        mask.scatter_(1, chosen, True)
    if device is None or torch.device(device).type == "cpu":
        return mask
    return mask.pin_memory().to(device, non_blocking=True)  # no blocking copy in the step
