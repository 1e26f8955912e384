"""Raw text -> fixed-length packed token blocks, in a deterministic order a resumed run can seek into.

Documents are joined with the end-of-text token and cut into `seq_len` blocks (no padding, no loss on
padding), the standard way to pretrain on a corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from transformers import PreTrainedTokenizerBase


def load_text_column(files: Sequence[str], text_field: str) -> list[str]:
    """Read JSONL/JSONL.GZ files with `datasets`; name the file when it is missing or lacks the field."""
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"data file {f}: no such file")
    ds = load_dataset("json", data_files=list(files), split="train")
    if text_field not in ds.column_names:
        raise KeyError(f"data files {list(files)}: no field {text_field!r} (fields: {ds.column_names})")
    texts = ds[text_field]
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(
            f"data files {list(files)}: field {text_field!r} is not a string in records {bad[:10]}"
        )
    return texts


def pack_texts(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, seq_len: int, max_tokens: int | None = None
) -> torch.Tensor:
    """Tokenize, join with EOS, cut into (N, seq_len) int32 blocks; the ragged tail is dropped and counted."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path} has no eos_token: cannot separate documents")
    ids: list[int] = []
    for start in range(0, len(texts), 256):
        for doc in tokenizer(list(texts[start : start + 256]), add_special_tokens=False, verbose=False)[
            "input_ids"
        ]:
            ids.extend(doc)
            ids.append(eos)
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    if max_tokens is not None:
        ids = ids[:max_tokens]
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"only {len(ids)} tokens of text: fewer than one sequence of {seq_len}")
    return torch.tensor(np.asarray(ids[: n * seq_len], dtype=np.int32)).view(n, seq_len)


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
