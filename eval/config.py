"""Typed, strict schema of `python -m eval`. The DictConfig from Hydra is converted once, in `__main__`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue

from train.modeling.target import TargetConfig
from train.tracking import LoggerConfig

PROMPT_SOURCES = ("embedded", "jsonl")
PROMPT_CATEGORIES = ("chat", "docs")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class PromptsConfig:
    """Which held-out prompts to decode."""

    source: str = "embedded"  # embedded = the shipped dialogues_valid + pydocs_valid; jsonl = `files`
    files: list[str] = field(
        default_factory=list
    )  # source=jsonl: rows with "messages" (chat) or "text" (docs)
    categories: list[str] = field(default_factory=lambda: list(PROMPT_CATEGORIES))  # embedded: which to use
    num_prompts: int = 16  # total, split evenly over the categories (per-category order is stable)
    docs_prefix_tokens: int = 64  # a docs prompt is this many leading tokens of a document
    max_prompt_tokens: int = 256  # longer chat prompts are left out (and counted in the report)

    def __post_init__(self) -> None:
        if self.source not in PROMPT_SOURCES:
            raise ValueError(f"prompts.source={self.source!r}: expected one of {PROMPT_SOURCES}")
        if self.source == "jsonl" and not self.files:
            raise ValueError("prompts.source=jsonl needs prompts.files=[path.jsonl(.gz), ...]")
        unknown = [c for c in self.categories if c not in PROMPT_CATEGORIES]
        if unknown or not self.categories:
            raise ValueError(
                f"prompts.categories={self.categories}: expected a subset of {PROMPT_CATEGORIES}"
            )
        if self.num_prompts < 1:
            raise ValueError(f"prompts.num_prompts={self.num_prompts}: must be >= 1")
        if not 1 <= self.docs_prefix_tokens <= self.max_prompt_tokens:
            raise ValueError(
                f"prompts.docs_prefix_tokens={self.docs_prefix_tokens}: must be in 1..max_prompt_tokens "
                f"({self.max_prompt_tokens})"
            )


@dataclass
class EvalConfig:
    """Chain speculative decoding of a draft against its target, checked token for token against greedy."""

    target: TargetConfig = field(default_factory=TargetConfig)  # conf group `target/`
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # conf group `logger/`
    draft_path: str = (
        "???"  # a draft export folder (config.json + model.safetensors); "random" = untrained head
    )
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    draft_length: int = 4  # k: tokens the draft proposes per target verification forward
    max_new_tokens: int = 64  # per prompt, counting the token the prefill produces
    temperature: float = 0.0  # only 0.0 (greedy verification) is implemented
    seed: int = 0  # seeds torch (the "random" draft's initialisation)
    device: str = "auto"  # auto = cuda when available, else cpu
    cpu_threads: int = 0  # torch intra-op threads; 0 = torch default; 1 steadies timings on a busy CPU
    output_dir: str = "outputs/eval"  # results.{json,csv}, outputs.jsonl, the plot, the resolved config

    def __post_init__(self) -> None:
        if self.temperature != 0.0:
            raise ValueError(
                f"temperature={self.temperature}: only temperature=0.0 (greedy verification) is supported; "
                "sampling-based verification is not implemented yet"
            )
        if self.draft_length < 1:
            raise ValueError(f"draft_length={self.draft_length}: must be >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be >= 1")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads={self.cpu_threads}: must be >= 0 (0 = torch's default)")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: expected one of {DEVICES}")


def to_eval_config(cfg: DictConfig | dict) -> EvalConfig:
    """Merge onto the schema (an unknown key fails, named) and build the dataclasses (validation runs)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(EvalConfig), cfg)
    except ConfigKeyError as err:
        raise ValueError(f"unknown eval config key {err.full_key!r}: {err.msg.splitlines()[0]}") from err
    try:
        obj = OmegaConf.to_object(merged)
    except MissingMandatoryValue as err:
        hint = " (a draft export folder, or draft_path=random)" if err.full_key == "draft_path" else ""
        raise ValueError(f"eval config key {err.full_key!r} must be set{hint}") from err
    assert isinstance(obj, EvalConfig)
    return obj
