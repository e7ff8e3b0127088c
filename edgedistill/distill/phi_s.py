"""PHI-S standardisation of teacher targets (Ranzinger et al. 2024, "PHI-S: Distribution Balancing
for Label-Free Multi-Teacher Distillation").

Per-channel standardisation (`running`) treats channels as independent and gives each its own
scale. PHI-S instead rotates the centred targets into the teacher's PCA basis, spreads the
variance evenly with a Hadamard matrix, and divides by one scalar: y = H Uᵀ (x - μ) / φ with
φ² = mean eigenvalue. Every channel then has unit variance and the map stays a rotation plus one
scale, so the loss weighs all directions of the teacher's space alike.

The statistics (mean and full covariance) are accumulated over the first `estimate_batches`
training batches (the global batches: the sums are added over all ranks), then frozen, as the
paper estimates them once over the data. They are buffers, checkpointed for exact resume.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import DistContext, from_main_, sum_tensors_
from .hadamard import equalizing_rotation


class PhiSNorm(nn.Module):
    def __init__(self, dim: int, estimate_batches: int = 32, eps: float = 1e-6):
        super().__init__()
        self.estimate_batches, self.eps = estimate_batches, eps
        self._seen: int | None = None  # `count` mirrored on the host: reading the buffer each step would sync with the GPU
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("rotation", torch.eye(dim))  # H Uᵀ
        self.register_buffer("scale", torch.ones(()))  # φ
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        # float64 sums: the covariance of bf16 teacher outputs over many tokens loses precision in fp32
        self.register_buffer("sum", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("outer", torch.zeros(dim, dim, dtype=torch.float64))
        self.register_buffer("samples", torch.zeros((), dtype=torch.float64))

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._seen = None  # re-read once from the loaded buffer

    @torch.no_grad()
    def update(self, x: torch.Tensor, ctx: DistContext = DistContext()) -> None:
        """Add the global batch [..., D] to the statistics and refit the map, until the estimate is frozen."""
        if self._seen is None:
            self._seen = int(self.count)
        if self._seen >= self.estimate_batches:
            return
        flat = x.detach().reshape(-1, x.shape[-1]).double()
        sums = [flat.sum(0), flat.T @ flat, flat.new_tensor(float(flat.shape[0]))]
        sum_tensors_(sums, ctx)
        self.sum += sums[0]
        self.outer += sums[1]
        self.samples += sums[2]
        self.count += 1
        self._seen = done = self._seen + 1
        if done & (done - 1) == 0 or done == self.estimate_batches:  # refit at 1, 2, 4, ... and at the end: eigh is not free
            self._refit()
            # every rank fitted the same sums; rank 0's map is sent anyway, as eigh need not agree bit for bit across machines
            from_main_([self.mean, self.rotation, self.scale], ctx)

    def _refit(self) -> None:
        mean = self.sum / self.samples
        cov = self.outer / self.samples - torch.outer(mean, mean)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov.cpu())  # the CPU LAPACK path is exact and fast enough at D ≤ 2048
        eigenvalues = eigenvalues.clamp_min(0)
        # eigh's signs are arbitrary, and the Hadamard step spreads one flipped sign over every channel, so
        # fp16 rounding of the same targets (a cache) could give a different map: fix each vector's largest entry positive
        largest = eigenvectors.gather(0, eigenvectors.abs().argmax(0, keepdim=True))
        eigenvectors = eigenvectors * torch.where(largest < 0, -1.0, 1.0).to(eigenvectors.dtype)
        equalizer = torch.from_numpy(equalizing_rotation(eigenvalues.numpy()))
        self.mean.copy_(mean.float())
        self.rotation.copy_((equalizer @ eigenvectors.T).float())
        self.scale.copy_((eigenvalues.mean() + self.eps).sqrt().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) @ self.rotation.T.to(x.dtype) / self.scale.to(x.dtype)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """φ y R + μ (R is orthogonal): a standardised prediction back in the teacher's space."""
        return (x * self.scale.to(x.dtype)) @ self.rotation.to(x.dtype) + self.mean.to(x.dtype)

    @torch.no_grad()
    def fold_into_head(self, head: nn.Sequential) -> None:
        """φ Rᵀ head(x) + μ as one Linear: W' = φ Rᵀ W, b' = φ Rᵀ b + μ."""
        linear, back = head[-1], self.rotation.T * self.scale
        linear.weight.copy_(back @ linear.weight)
        linear.bias.copy_(back @ linear.bias + self.mean)
