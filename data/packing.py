"""The order in which a run reads its (N, seq_len) blocks (made by data/blocks.py): a pure function of the
micro-batch index, so a resumed run seeks instead of replaying.
"""

from __future__ import annotations

import numpy as np


class BlockSampler:
    """Which blocks rank r reads in micro-batch i: a pure function of (seed, i), so resuming is a seek.

    Each epoch is a fresh permutation; ranks take interleaved slices so no block is read twice per epoch.
    """

    def __init__(self, num_blocks: int, micro_batch: int, rank: int, world: int, seed: int) -> None:
        self.per_epoch = num_blocks // (micro_batch * world)
        if self.per_epoch == 0:
            raise ValueError(
                f"{num_blocks} packed sequences cannot fill one micro-batch of {micro_batch} on {world} ranks"
            )
        self.num_blocks, self.micro_batch, self.rank, self.world, self.seed = (
            num_blocks,
            micro_batch,
            rank,
            world,
            seed,
        )
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def indices(self, i: int) -> np.ndarray:
        epoch, within = divmod(i, self.per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.default_rng(self.seed + epoch).permutation(self.num_blocks)
            self._epoch = epoch
        start = (within * self.world + self.rank) * self.micro_batch
        return self._perm[start : start + self.micro_batch]
