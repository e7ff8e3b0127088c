"""Random patch masks for the patch-level objective (Proteus: half the batch, half the patches)."""

from __future__ import annotations

import torch


def random_masks(batch: int, n_patches: int, share: float, ratio: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Bool [batch, n_patches]: the first round(share*batch) samples get round(ratio*n) masked patches."""
    masked_samples = int(round(share * batch))
    per_sample = int(round(ratio * n_patches))
    mask = torch.zeros(batch, n_patches, dtype=torch.bool)
    if masked_samples and per_sample:
        scores = torch.rand(masked_samples, n_patches, generator=generator)
        chosen = scores.argsort(dim=1)[:, :per_sample]
        mask[:masked_samples].scatter_(1, chosen, True)
    if device is None or torch.device(device).type == "cpu":
        return mask
    return mask.pin_memory().to(device, non_blocking=True)  # no blocking copy in the step
