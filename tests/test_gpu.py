"""The CUDA paths no CPU run exercises: flash-attn's varlen kernel on packed chats, a bf16 training step and
the nccl process group. Marked `gpu`; each skips, saying why, where there is no CUDA device or no flash-attn.
`python launch/gpu_check.py` runs them on a GPU machine with the packed-chats benchmark and vLLM's CUDA build,
and writes one report (docs/gpu-check.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.packing import pack_chats
from tests.conftest import REPO, TINY_LLAMA, run_train, short_run_overrides
from tests.test_hot_paths import assert_batched_verification_equals_loop, assert_gqa_in_place_equals_copy
from tests.test_packed_chats import config, conversations
from tests.test_resilience_resume import metrics
from train.decoding.sampling import Sampling
from train.draft_factory import build_draft
from train.feature_source import target_features
from train.loss_seam import objective_for
from train.modeling.doc_mask import Packing, doc_causal_mask, varlen_of
from train.modeling.draft.layers import Attention
from train.modeling.target import FrozenTarget

NO_CUDA = (
    "no CUDA device (torch.cuda.is_available() is False): run `python launch/gpu_check.py` on a GPU machine"
)
NO_FLASH = (
    "flash-attn is not installed: `pip install -e '.[flash]'` on a CUDA machine (launch/gpu_check.py tries)"
)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]
# On CPU the module's NO_CUDA reason is the one to report; flash-attn's absence matters only beside CUDA.
needs_flash = pytest.mark.skipif(
    torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is None, reason=NO_FLASH
)
BF16 = {"rtol": 2e-2, "atol": 2e-2}  # bf16 keeps 8 mantissa bits: two kernels agree to about 1 %


@needs_flash
def test_draft_attention_varlen_equals_sdpa_block_mask() -> None:
    """The draft's own attention (grouped kv heads) on packed rows: flash-attn varlen == sdpa + block mask."""
    torch.manual_seed(0)
    attn = Attention(256, 8, 2, 32, 10000.0).cuda().to(torch.bfloat16)
    _, _, docs = pack_chats(*conversations(), pad_id=0)
    docs = docs.long().cuda()
    packing = Packing.of(docs, "flash_attention_2")
    assert packing.varlen, "flash-attn is importable on CUDA but Packing chose dense masks"
    x = torch.randn(*docs.shape, 256, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        flash = attn(x, packing.position_ids, attn_mask=varlen_of(docs))
        sdpa = attn(x, packing.position_ids, attn_mask=doc_causal_mask(docs))
    torch.testing.assert_close(flash, sdpa, **BF16)


@needs_flash
@pytest.mark.parametrize("draft", ["eagle", "eagle3"])
def test_packed_chat_losses_equal_under_flash_and_sdpa(draft: str, tmp_path: Path) -> None:
    """The target through transformers' flash_attention_2 (packing read from restarting positions) and the
    draft through VarlenMask give the losses that sdpa with block masks gives, on the same packed batch."""
    ids, mask, docs = pack_chats(*conversations(), pad_id=0)
    ids, mask, docs = ids.long().cuda(), mask.cuda(), docs.long().cuda()
    overrides = [f"draft={draft}"] + (
        ["draft.ttt_steps=3", "draft.draft_vocab_size=null"] if draft == "eagle3" else []
    )
    losses = {}
    for impl in ("flash_attention_2", "sdpa"):
        target = FrozenTarget.load(str(TINY_LLAMA), "bfloat16", "cuda", impl)
        cfg = config(tmp_path, *overrides)
        torch.manual_seed(0)
        head = build_draft(cfg, target).cuda().to(torch.bfloat16).eval()
        packing = Packing.of(docs, impl)
        assert packing.varlen == (impl == "flash_attention_2")
        with torch.no_grad():
            feats = target_features(target, ids, packing)
            losses[impl] = objective_for(cfg)(head, target, ids, feats, mask, False, packing).loss.float()
    torch.testing.assert_close(losses["flash_attention_2"], losses["sdpa"], **BF16)


def test_bf16_training_step_on_cuda(small_corpus: Path, tmp_path: Path) -> None:
    """One process, DeepSpeed ZeRO-2 in bf16 on the GPU: the loss is finite and falls."""
    out = tmp_path / "run"
    overrides = short_run_overrides(small_corpus, out, steps=20)
    run_train([*overrides, "deepspeed=zero2", "deepspeed.config.bf16.enabled=true"], nproc=1)
    losses = [rec["train/loss"] for _, rec in sorted(metrics(out).items()) if "train/loss" in rec]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5]), f"bf16 loss did not fall: {losses}"


NCCL_PROBE = """
import torch, torch.distributed as dist
from train import distributed as d
dev = d.init()
total = d.all_reduce_sum([float(d.rank() + 1)], dev)[0]
flags = d.any_rank([d.rank() == 0], dev)
gathered = d.all_gather_object({"rank": d.rank()})
d.barrier()
print("RESULT", dist.get_backend(), dev.type, d.world_size(), total, flags[0], len(gathered), flush=True)
"""


def test_nccl_process_group_and_collectives() -> None:
    """train.distributed on CUDA: nccl, one rank per GPU, and every collective helper the trainer calls."""
    n = torch.cuda.device_count()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
         "--no-python", sys.executable, "-c", NCCL_PROBE],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == n
    for backend, dev, world, total, flag, gathered in results:
        assert (backend, dev, int(world), float(total), flag, int(gathered)) == (
            "nccl",
            "cuda",
            n,
            n * (n + 1) / 2,
            "True",
            n,
        )


@pytest.mark.parametrize("heads", [(8, 2), (6, 3)])
def test_grouped_query_attention_in_place_equals_copy_on_cuda(
    heads: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """sdpa's own GQA path on CUDA kernels (flash / memory-efficient) gives what copied kv heads give."""
    assert_gqa_in_place_equals_copy(heads, monkeypatch, "cuda", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampled", [False, True], ids=["top-k tree", "sampled q"])
def test_batched_sample_verification_equals_the_per_node_loop_on_cuda(sampled: bool) -> None:
    assert_batched_verification_equals_loop(sampled, Sampling(0.7, top_p=0.9), "cuda")
