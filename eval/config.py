"""Typed, strict schema of `python -m eval`. The DictConfig from Hydra is converted once, in `__main__`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from data.tracking import LoggerConfig
from data.typed import to_typed
from train.modeling.target import TargetConfig

PROMPT_SOURCES = ("tasks", "embedded", "jsonl", "questions")
TASK_CATEGORIES = ("multi_turn", "code", "math", "instruction", "qa", "summarization")
EMBEDDED_CATEGORIES = ("chat", "docs")
DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("draftforge", "vllm")
MODES = ("chain", "tree")
DEFAULT_PROMPTS = 16  # prompts.num_prompts=null on a shipped source (a user's file is read whole)


@dataclass
class PromptsConfig:
    """Which held-out prompts to decode."""

    # tasks = the six benchmark-style categories built from the shipped corpus (eval/assets/tasks.jsonl);
    # embedded = raw dialogues_valid (chat) + pydocs_valid (docs); jsonl = `files` with "messages" or
    # "text" rows; questions = MT-bench / Spec-Bench question.jsonl files (first turn of each question).
    source: str = "tasks"
    files: list[str] = field(default_factory=list)  # source=jsonl|questions: the files to read
    categories: list[str] = field(default_factory=list)  # which categories to keep; [] = all there are
    # Total, split evenly over the categories (per-category order is stable). None: a user's file
    # (jsonl, questions) is read whole; the shipped sources (tasks, embedded) give DEFAULT_PROMPTS.
    num_prompts: int | None = None
    docs_prefix_tokens: int = 64  # a docs prompt is this many leading tokens of a document
    max_prompt_tokens: int = 256  # longer chat prompts are left out (and counted in the report)

    def __post_init__(self) -> None:
        if self.source not in PROMPT_SOURCES:
            raise ValueError(f"prompts.source={self.source!r}: expected one of {PROMPT_SOURCES}")
        if self.source in ("jsonl", "questions") and not self.files:
            raise ValueError(f"prompts.source={self.source} needs prompts.files=[path.jsonl(.gz), ...]")
        known = {"tasks": TASK_CATEGORIES, "embedded": EMBEDDED_CATEGORIES}.get(self.source)
        unknown = [c for c in self.categories if known and c not in known]
        if unknown:
            raise ValueError(f"prompts.categories={self.categories}: expected a subset of {known}")
        if self.num_prompts is not None and self.num_prompts < 1:
            raise ValueError(f"prompts.num_prompts={self.num_prompts}: must be >= 1")
        if not 1 <= self.docs_prefix_tokens <= self.max_prompt_tokens:
            raise ValueError(
                f"prompts.docs_prefix_tokens={self.docs_prefix_tokens}: must be in 1..max_prompt_tokens "
                f"({self.max_prompt_tokens})"
            )

    def total(self) -> int | None:
        """How many prompts to take; None = every usable prompt (a user's file with num_prompts unset)."""
        if self.num_prompts is not None or self.source in ("jsonl", "questions"):
            return self.num_prompts
        return DEFAULT_PROMPTS


@dataclass
class TreeConfig:
    """EAGLE-2 dynamic tree: expand the most probable nodes level by level, keep the best `budget`."""

    depth: int = 5  # levels below the root = draft forwards per step
    topk: int = 4  # children per expanded node, and nodes expanded per level
    budget: int = 24  # drafted nodes the target verifies per step (plus the root)
    # Serving policy (eval.budget): drafted nodes verified per target forward for the WHOLE batch, shared by
    # its rows by path probability (each row's root on top); chains too. null = each row verifies its own.
    batch_budget: int | None = None

    def __post_init__(self) -> None:
        if min(self.depth, self.topk, self.budget) < 1:
            raise ValueError(f"tree: depth, topk and budget must be >= 1, got {self}")
        if self.batch_budget is not None and self.batch_budget < 1:
            raise ValueError(f"tree.batch_budget={self.batch_budget}: must be >= 1 (null = no shared budget)")


@dataclass
class VllmConfig:
    """engine=vllm: vLLM runs in its own environment (docs/serving.md "Serving engines (vLLM)")."""

    python: str = ""  # that environment's python; "" = the DRAFTFORGE_VLLM_PYTHON environment variable
    max_model_len: int = 512  # prompt + new tokens; also sizes vLLM's KV cache
    timeout_s: float = 1800.0  # the whole vLLM worker run


@dataclass
class EvalConfig:
    """Speculative decoding of a draft against its target, timed against the target alone in the same
    engine; at temperature 0 every output is checked token for token against the target's greedy output."""

    target: TargetConfig = field(default_factory=TargetConfig)  # conf group `target/`
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # conf group `logger/`
    draft_path: str = "???"  # an export folder, a HF causal-LM folder (dense draft), or "random"
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    mode: str = "tree"  # chain | tree (EAGLE-2 dynamic tree)
    draft_length: int = 4  # chain: tokens the draft proposes per target verification forward
    tree: TreeConfig = field(default_factory=TreeConfig)
    batch_sizes: list[int] = field(default_factory=lambda: [1])  # each is a full run over the prompts
    max_new_tokens: int = 64  # per prompt, counting the token the prefill produces
    temperature: float = 0.0  # 0 = greedy; > 0 = lossless speculative sampling
    top_p: float = 1.0  # nucleus sampling of the target (and of a sampled chain draft)
    seed: int = 0  # seeds torch (the "random" draft) and the sampling generator
    device: str = "auto"  # auto = cuda when available, else cpu
    cpu_threads: int = 0  # torch intra-op threads; 0 = torch default; 1 steadies timings on a busy CPU
    progress: bool = True  # tqdm progress bars
    output_dir: str = "outputs/eval"  # results.{json,csv}, outputs.jsonl, plots, the resolved config
    engine: str = "draftforge"  # vllm = also serve the draft in vLLM (chain) and compare (eval/vllm_backend)
    vllm: VllmConfig = field(default_factory=VllmConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {MODES}")
        if self.temperature < 0.0:
            raise ValueError(f"temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.draft_length < 1:
            raise ValueError(f"draft_length={self.draft_length}: must be >= 1")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes={self.batch_sizes}: must be a non-empty list of sizes >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be >= 1")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads={self.cpu_threads}: must be >= 0 (0 = torch's default)")
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r}: expected one of {ENGINES}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: expected one of {DEVICES}")

    @property
    def positions(self) -> int:
        """Draft depths acceptance is reported for."""
        return self.draft_length if self.mode == "chain" else self.tree.depth


def to_eval_config(cfg: DictConfig | dict) -> EvalConfig:
    """Merge onto the schema (an unknown key fails, named) and build the dataclasses (validation runs)."""
    hints = {"draft_path": "a draft export folder, or draft_path=random"}
    return to_typed(EvalConfig, cfg, "eval config", hints=hints)
