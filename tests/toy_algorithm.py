"""A toy draft algorithm written as one folder, `train/drafts/toy/`, the way docs/adding-an-algorithm.md says:
one residual block on the target's last hidden state at position t proposes the token at t+2 through the
target's LM head (the target's own logits give t+1). tests/test_add_an_algorithm.py writes these files into a
copy of the repository and runs docs/adding-an-algorithm.md's commands there, with nothing else edited."""

from __future__ import annotations

from pathlib import Path

FOLDER = "train/drafts/toy"

CONFIG = '''"""`draft=toy`: its settings; these defaults are the only defaults."""

from dataclasses import dataclass


@dataclass
class ToyConfig:
    name: str = "toy"
    init_scale: float = 0.0  # std of the block's initial weights; 0 = start as the identity
'''

HEAD = '''"""One residual block on the target's last hidden state: a plain nn.Module."""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ToyHeadConfig:
    hidden_size: int
    vocab_size: int
    init_scale: float = 0.0
    architecture: str = "toy"

    def to_dict(self) -> dict:
        return asdict(self)


class ToyHead(nn.Module):
    config_class = ToyHeadConfig

    def __init__(self, config: ToyHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.hidden_size, config.hidden_size)
        nn.init.normal_(self.linear.weight, std=config.init_scale)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + F.silu(self.linear(hidden))
'''

OBJECTIVE = '''"""Position t learns the target's distribution of the token at t+2."""

import torch
from torch import nn

from train.losses import divergence_per_position, top1_match_sum
from train.modeling.doc_mask import Packing
from train.modeling.target import FrozenTarget, TargetFeatures
from train.objectives.base import LossOutput, ObjectiveSettings


class ToyObjective(ObjectiveSettings):
    def __call__(
        self,
        draft: nn.Module,
        target: FrozenTarget,
        input_ids: torch.Tensor,
        features: TargetFeatures,
        loss_mask: torch.Tensor,
        training: bool,
        packing: Packing | None = None,
    ) -> LossOutput:
        dtype = next(draft.parameters()).dtype
        logits = target.lm_head(draft(features.hidden[:, :-2].to(dtype)).to(target.dtype)).float()
        want = features.logits[:, 1:-1].float()  # position t+1's distribution: the token at t+2
        mask = loss_mask[:, 2:].float()
        if packing is not None:
            mask = mask * packing.same_doc(2)
        per = divergence_per_position(logits, want, *self.divergence)
        count = mask.sum()
        loss = (per * mask).sum() / count.clamp(min=1)
        stats = {"loss_sum": loss.detach() * count, "count": count,
                 "top1_agreement_sum": top1_match_sum(logits, want, mask)}
        return LossOutput(loss, stats)
'''

DRAFTER = '''"""Drafts one token below the root: the block's guess for the token after it."""

import torch
from torch import nn

from train.decoding.drafter import DraftSettings, DraftTree
from train.modeling.target import FrozenTarget


class ToyDrafter:
    feature_layers: tuple[int, ...] = (-1,)  # the target's last hidden state

    def __init__(self, head: nn.Module, target: FrozenTarget) -> None:
        self.head, self.target = head, target
        self.start(1)

    def start(self, batch: int) -> None:
        self.last = torch.zeros(batch, self.target.hidden_size, dtype=self.target.dtype, device=self.target.device)

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        n = valid.sum(1)
        newest = features[torch.arange(tokens.shape[0], device=tokens.device), (n - 1).clamp(min=0)]
        self.last = torch.where((n > 0)[:, None], newest, self.last)

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        logp = torch.log_softmax(self.target.lm_head(self.head(self.last)).float(), -1)
        score, token = logp.max(-1)
        b = root.shape[0]
        minus_one = torch.full((b, 1), -1, dtype=torch.long, device=root.device)
        return DraftTree(token[:, None], minus_one, torch.ones_like(minus_one), None, score[:, None])

    def select_rows(self, rows: torch.Tensor) -> None:
        self.last = self.last.index_select(0, rows)
'''

EXPORT = '''"""The toy's own serving layout: config.json marked "toy_format" plus model.safetensors."""

from pathlib import Path

from torch import nn

from train.drafts.toy.head import ToyHead, ToyHeadConfig
from train.export_formats.common import DTYPES, Target, cast, read_json, read_tensors, write_json, write_tensors

NAME = "toy"


def export(head: nn.Module, meta: dict, out: Path, target: Target, dtype: str) -> list[str]:
    write_json(out / "config.json", {"toy_format": 1, **head.config.to_dict()})
    write_tensors(out / "model.safetensors", cast(head.state_dict(), DTYPES[dtype]))
    return []


def matches(src: Path) -> bool:
    return (src / "config.json").is_file() and "toy_format" in read_json(src / "config.json")


def load(src: Path, target: Target | None) -> tuple[nn.Module, dict]:
    c = read_json(src / "config.json")
    c.pop("toy_format")
    head = ToyHead(ToyHeadConfig(**c))
    head.load_state_dict({k: v.float() for k, v in read_tensors(src).items()})
    return head, {}
'''

INIT = '''"""The toy algorithm: one folder, one registration."""

import torch
from torch import nn

from train.drafts.spec import BuildContext, DraftSpec, no_shared_params, no_target_layers
from train.drafts.toy import export
from train.drafts.toy.config import ToyConfig
from train.drafts.toy.drafter import ToyDrafter
from train.drafts.toy.head import ToyHead, ToyHeadConfig
from train.drafts.toy.objective import ToyObjective
from train.modeling.target import FrozenTarget


def build(cfg: ToyConfig, target: FrozenTarget, ctx: BuildContext) -> nn.Module:
    torch.manual_seed(0)
    return ToyHead(ToyHeadConfig(target.hidden_size, target.vocab_size, cfg.init_scale))


SPEC = DraftSpec(
    name="toy",
    config=ToyConfig,
    head=ToyHead,
    build=build,
    objective=ToyObjective,
    drafter=ToyDrafter,
    target_layers=no_target_layers,
    frozen_shared_params=no_shared_params,
    formats=(export,),
    aliases={"toy-wide": {"init_scale": 0.01}},
)
'''

FILES = {
    "__init__.py": INIT,
    "config.py": CONFIG,
    "head.py": HEAD,
    "objective.py": OBJECTIVE,
    "drafter.py": DRAFTER,
    "export.py": EXPORT,
}


def write(repo: Path) -> Path:
    folder = repo / FOLDER
    folder.mkdir(parents=True, exist_ok=False)  # never over an algorithm that is there already
    for name, text in FILES.items():
        (folder / name).write_text(text)
    return folder


if __name__ == "__main__":  # `python -m tests.toy_algorithm`, from the repository root
    print(f"wrote {write(Path.cwd())}")
