"""The sample stream: which (index, view seed) each rank sees at each step, as a pure function.

Position p of the global stream takes item perm_e[p % n] (perm_e: a seeded permutation for
epoch e = p // n) and view seed hash(seed, p). Resuming at step s just starts at p = s*B*W, so
the "data position" in a checkpoint is a step count, and a run resumed with another world size
still sees the same global stream.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler

from .augment import view_seed


class SampleStream(Sampler):
    def __init__(self, n: int, batch: int, steps: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch, self.steps, self.seed = n, batch, steps, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self._epoch, self._perm = -1, None

    def key(self, position: int) -> tuple[int, int]:
        epoch = position // self.n
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(view_seed(self.seed, epoch))).tolist()
        return self._perm[position % self.n], view_seed(self.seed + 1, position)

    def positions(self, step: int) -> range:
        first = (step * self.world + self.rank) * self.batch
        return range(first, first + self.batch)

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            for position in self.positions(step):
                yield self.key(position)

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.batch
