"""The seam between the decoding engine and a draft model.

The engine owns the target, its cache, verification and bookkeeping; a `Drafter` owns everything about the
draft (its weights, its own cache, how it turns verified context into proposals). Per decoding step:

    drafter.observe(tokens, features, valid)   # what the target just verified, per row (right-padded)
    tree = drafter.propose(root, settings, gen) # a chain or a tree hanging below each row's last token
    ...target verifies the tree in one forward...
    drafter.select_rows(rows)                   # rows that finished leave the batch

An algorithm's drafter is a class satisfying this protocol in its folder (train/drafts/<name>/drafter.py),
named by its spec (`SPEC.drafter`). It lives on train's floor, not in eval, so that algorithm folders can
use it without `train` importing `eval`; eval's engine imports it from here. A drafter that reads fused
target layers sets `feature_layers` from its spec's `target_layers` (the one answer); one that reads the
target's final hidden state uses (-1,), one that reads tokens only (). Every drafter serves chains and trees
(`train.decoding.trees`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from train.decoding.sampling import Sampling

CHAIN, TREE = "chain", "tree"


@dataclass(frozen=True)
class DraftSettings:
    """What shape of proposal the engine asks for (from the eval config)."""

    mode: str = TREE  # chain | tree
    draft_length: int = 4  # chain: tokens per step
    depth: int = 5  # tree: levels below the root (= draft forwards per step)
    topk: int = 4  # tree: children per expanded node and nodes expanded per level (EAGLE-2's top_k)
    budget: int = 24  # tree: nodes kept after reranking by path probability (target verifies budget + 1)
    sampling: Sampling = Sampling()  # a chain at temperature > 0 samples from the draft's distribution
    # Drafted nodes the target verifies per forward for the whole batch (eval.budget); None = every row
    # verifies its whole chain or tree.
    batch_budget: int | None = None


@dataclass
class DraftTree:
    """Proposals for every row, in topological order (a node's parent comes before it).

    Node i of row b is token `tokens[b, i]`, child of node `parents[b, i]` or of the root (-1): the row's
    last emitted token, which the target has not read yet. A chain is the tree with parents = i - 1.
    """

    tokens: torch.Tensor  # (B, N) long
    parents: torch.Tensor  # (B, N) long, -1 = the root
    depths: torch.Tensor  # (B, N) long, 1 = a child of the root
    # (B, N, V) float: the distribution node i was *sampled* from, given the siblings drawn before it
    # (sampling without replacement renormalises). None: proposals are deterministic (argmax / top-k),
    # which verification treats as a point mass.
    q: torch.Tensor | None = None
    # (B, N) float: each node's path log-probability under the draft (the sum over its root-to-node path),
    # strictly below its parent's; what a shared budget ranks nodes across rows by. None: rank by depth.
    scores: torch.Tensor | None = None
    # (B, N) bool: False marks padding of a row with fewer nodes (a ragged batch, see eval.budget); such a
    # node has parent -1 and depth 1, is never anyone's parent, and verification never accepts it.
    valid: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.tokens.shape[1]

    def counts(self) -> list[int]:
        """Real (non-padding) nodes per row."""
        if self.valid is None:
            return [self.size] * self.tokens.shape[0]
        return self.valid.sum(1).tolist()

    @classmethod
    def empty(cls, batch: int, device: torch.device) -> DraftTree:
        z = torch.zeros(batch, 0, dtype=torch.long, device=device)
        return cls(z, z.clone(), z.clone())


@runtime_checkable
class Drafter(Protocol):
    # Which of the target's `hidden_states` the drafter reads, concatenated on the last dim in this order
    # (-1 = after the final norm, what the LM head reads). () = token ids only.
    feature_layers: tuple[int, ...]

    def start(self, batch: int) -> None:
        """Forget everything: a new batch of `batch` rows begins (its prompt comes through observe)."""

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        """Newly verified positions per row, in order: the target read tokens[b, j] (B, T) and produced
        features[b, j] (B, T, F) there. valid (B, T) is a prefix per row; the rest is padding."""

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        """Proposals below root (B,), each row's last emitted token. The drafter's cache must hold only
        verified context again when this returns (scratch positions for the tree are dropped)."""
        ...

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only these rows (indices into the current batch), in this order."""


class NoDrafter:
    """Proposes nothing: the engine then decodes one target token per forward, which is the baseline that
    speculative decoding is timed against (same engine, same masks and caches)."""

    feature_layers: tuple[int, ...] = ()

    def start(self, batch: int) -> None:
        pass

    def observe(self, tokens: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> None:
        pass

    def propose(self, root: torch.Tensor, settings: DraftSettings, gen: torch.Generator | None) -> DraftTree:
        return DraftTree.empty(root.shape[0], root.device)

    def select_rows(self, rows: torch.Tensor) -> None:
        pass
