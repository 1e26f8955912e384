"""Pins the transformers cache API that train/decoding/kv.py relies on instead of rewriting a DynamicCache's
per-layer tensors: `crop(-n)` drops the last n slots (the one meaning every transformers 5 release shares), and
`batch_select_indices(rows)` keeps those rows. Also: gather_tail moves only the selected slots and leaves
the prefix untouched, and a prefix selection copies nothing."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from train.decoding.kv import cache_length, gather_tail, select_rows, truncate


def filled_cache(batch: int = 3, length: int = 7) -> DynamicCache:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        return model(torch.randint(0, 64, (batch, length)), use_cache=True).past_key_values


def snapshot(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


def test_crop_takes_minus_the_slots_to_drop_and_truncate_uses_it() -> None:
    cache = filled_cache()
    before = snapshot(cache)
    cache.crop(-2)
    assert cache.get_seq_length() == 5
    for layer, (k, v) in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.keys, k[:, :, :5]) and torch.equal(layer.values, v[:, :, :5])
    truncate(cache, 5)  # nothing to drop: transformers 5.0's crop(0) would empty the cache
    assert cache_length(cache) == 5
    truncate(cache, 3)
    assert cache_length(cache) == 3
    assert torch.equal(cache.layers[1].keys, before[1][0][:, :, :3])
    with pytest.raises(ValueError, match="cannot truncate"):
        truncate(cache, 4)


def test_batch_select_indices_keeps_rows_and_select_rows_uses_it() -> None:
    cache = filled_cache()
    before = snapshot(cache)
    select_rows(cache, torch.tensor([2, 0]))
    for layer, (k, v) in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.keys, k[[2, 0]]) and torch.equal(layer.values, v[[2, 0]])


def test_gather_tail_moves_only_the_kept_slots() -> None:
    cache = filled_cache(batch=2, length=7)
    before = snapshot(cache)
    index = torch.tensor([[0, 2, 1], [0, 2, 0]])  # per row: offsets into slots 4.. (row 1 pads with 0)
    gather_tail(cache, 4, index)
    assert cache.get_seq_length() == 7
    for layer, (k, _) in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.keys[:, :, :4], k[:, :, :4])
        for row in range(2):
            assert torch.equal(layer.keys[row, :, 4:], k[row, :, 4 + index[row]])
    ptr = cache.layers[0].keys.data_ptr()
    gather_tail(cache, 4, torch.arange(2).expand(2, 2), prefix=True)
    assert cache.get_seq_length() == 6 and cache.layers[0].keys.data_ptr() == ptr  # a view: nothing copied
