"""Dense drafts as a plain Hugging Face model folder.

Defined by: transformers `PreTrainedModel.save_pretrained` / `AutoModelForCausalLM.from_pretrained`
(transformers 5.x, installed here) plus the target's tokenizer files, so the folder works with
`target.generate(..., assistant_model=AutoModelForCausalLM.from_pretrained(folder))` and as a draft model
for vLLM/SGLang (`--speculative-model`/`--speculative-draft-model-path` with a draft-model method). Assisted
generation needs draft and target to share the vocabulary, which the tokenizer check guarantees.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from train.drafts.dense.head import DenseDraft
from train.export_formats.card import vllm_commands
from train.export_formats.common import DTYPES, ExportError, Target, read_json

NAME = "hf-dense"
DETECT_ORDER = 1  # any *ForCausalLM folder with a tokenizer: after the marked layouts, before the EAGLE one


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    if not isinstance(head, DenseDraft):
        raise ExportError(f"{NAME}: only dense drafts are stand-alone models, not {type(head).__name__}")
    vocab = head.model.get_output_embeddings().weight.shape[0]
    if vocab != len(target.tokenizer) and vocab != int(target.config.vocab_size):
        raise ExportError(
            f"{NAME}: lm_head.weight has {vocab} rows; the target has {target.config.vocab_size} tokens"
        )
    model = head.model.to(DTYPES[dtype])
    try:
        model.save_pretrained(str(out), safe_serialization=True)
    finally:
        head.model.float()  # the caller's head stays in fp32
    target.tokenizer.save_pretrained(str(out))
    return [
        "```python",
        "from transformers import AutoModelForCausalLM",
        f"draft = AutoModelForCausalLM.from_pretrained('{out}')",
        f"target = AutoModelForCausalLM.from_pretrained('{target.path}')",
        "target.generate(input_ids, assistant_model=draft, max_new_tokens=64)",
        "```",
        "vLLM (`method: draft_model`):",
        *vllm_commands(target.path, out, "draft_model", int(meta.get("speculative_tokens") or 3)),
    ]


def matches(src: Path) -> bool:
    cfg = src / "config.json"
    if not cfg.is_file():
        return False
    c = read_json(cfg)
    return (
        bool(c.get("architectures"))
        and str(c["architectures"][0]).endswith("ForCausalLM")
        and ((src / "tokenizer_config.json").is_file() or (src / "tokenizer.json").is_file())
    )


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    return DenseDraft.from_pretrained(str(src), int(c["vocab_size"])), {"imported_format": NAME}
