"""Held-out prompts by category: chat rows go through the target's chat template (up to their last user
turn), text rows are a document prefix. Sources: the shipped task categories (eval/assets/tasks.jsonl, see
builders/tasks.py), the raw shipped corpus, user JSONL files, or MT-bench / Spec-Bench question.jsonl.

Selection is deterministic and spread over the whole file (evenly spaced rows), so a prompt id names the
same token ids on every machine and a larger num_prompts only adds prompts between the existing ones' rows.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from data.embedded_paths import CORPUS_DIR
from eval.config import EMBEDDED_CATEGORIES, PromptsConfig

TASKS_FILE = Path(__file__).resolve().parent / "assets" / "tasks.jsonl"  # written by python -m builders.tasks
EMBEDDED_FILES = {
    "chat": CORPUS_DIR / "dialogues_valid.jsonl.gz",
    "docs": CORPUS_DIR / "pydocs_valid.jsonl.gz",
}


@dataclass
class Prompt:
    id: str  # "<category>/<row id>": stable across runs and machines
    category: str  # e.g. code, qa (tasks), chat | docs (embedded), or the file's own categories
    input_ids: list[int]


@dataclass
class PromptSet:
    prompts: list[Prompt]
    skipped: dict[str, int]  # reason -> rows left out (too long, too short, no user turn)


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from err
    return rows


def chat_prompt_ids(tok: PreTrainedTokenizerBase, messages: list[dict]) -> list[int] | None:
    """Messages up to and including the last user turn (earlier turns stay: multi-turn context), then
    the assistant header; None when there is no user turn."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return None
    text = tok.apply_chat_template(messages[: users[-1] + 1], tokenize=False, add_generation_prompt=True)
    # The template already wrote any BOS it wants; encoding must not add a second one.
    return tok(text, add_special_tokens=False)["input_ids"]


def docs_prompt_ids(tok: PreTrainedTokenizerBase, text: str, prefix_tokens: int) -> list[int] | None:
    """The first `prefix_tokens` tokens (with the tokenizer's BOS, if any); None for a shorter document,
    so every docs prompt has the same length and categories stay comparable."""
    # Tokenize a generous leading slice, not a whole (possibly 100k-character) document; the full text is
    # only needed when the slice is too short to be sure its first `prefix_tokens` tokens are final.
    ids = tok(text[: 32 * prefix_tokens], add_special_tokens=True)["input_ids"]
    if len(ids) <= prefix_tokens and len(text) > 32 * prefix_tokens:
        ids = tok(text, add_special_tokens=True)["input_ids"]
    return ids[:prefix_tokens] if len(ids) >= prefix_tokens else None


def _category(row: dict) -> str:
    if "category" in row:
        return str(row["category"])
    return "chat" if "messages" in row else "docs"


def question_row(row: dict, where: str) -> dict:
    """MT-bench / Spec-Bench question.jsonl: {"question_id", "category", "turns": [str, ...]}. Only the
    first turn is decoded: later turns need the model's own earlier answers in the context."""
    turns = row.get("turns")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
        raise ValueError(f"{where}: a question.jsonl row needs 'turns': [str, ...], found keys {sorted(row)}")
    qid = row.get("question_id", row.get("id"))
    if qid is None:
        raise ValueError(f"{where}: a question.jsonl row needs 'question_id'")
    return {
        "id": qid,
        "category": row.get("category", "questions"),
        "messages": [{"role": "user", "content": turns[0]}],
    }


def _encode(
    row: dict, tok: PreTrainedTokenizerBase, cfg: PromptsConfig, where: str
) -> tuple[list[int] | None, str]:
    if "messages" in row:
        ids = chat_prompt_ids(tok, row["messages"])
        if ids is None:
            return None, "no_user_turn"
        return (ids, "") if len(ids) <= cfg.max_prompt_tokens else (None, "too_long")
    if "text" in row:
        ids = docs_prompt_ids(tok, row["text"], cfg.docs_prefix_tokens)
        return (ids, "") if ids is not None else (None, "too_short")
    raise ValueError(f"{where}: a prompt row needs 'messages' or 'text', found keys {sorted(row)}")


def _spread(n_rows: int, n_take: int) -> list[int]:
    """n_take row indices evenly spaced over n_rows (all rows when there are fewer)."""
    if n_take >= n_rows:
        return list(range(n_rows))
    return [(i * n_rows) // n_take for i in range(n_take)]


def load_prompts(cfg: PromptsConfig, tok: PreTrainedTokenizerBase) -> PromptSet:
    if cfg.source == "embedded":
        files = [EMBEDDED_FILES[c] for c in (cfg.categories or EMBEDDED_CATEGORIES)]
    elif cfg.source == "tasks":
        files = [TASKS_FILE]
    else:
        files = list(cfg.files)
    by_category: dict[str, list[Prompt]] = {}
    skipped: dict[str, int] = {}
    for path in files:
        for lineno, row in enumerate(read_jsonl(path), 1):
            where = f"{path}:{lineno}"
            if cfg.source == "questions":
                row = question_row(row, where)
            if cfg.categories and _category(row) not in cfg.categories:
                continue
            ids, reason = _encode(row, tok, cfg, where)
            if ids is None:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            category = _category(row)
            row_id = row.get("id", f"{Path(path).name}:{lineno}")
            by_category.setdefault(category, []).append(Prompt(f"{category}/{row_id}", category, ids))
    if not by_category:
        raise ValueError(
            f"no usable prompts in {[str(f) for f in files]} for categories {cfg.categories or 'all'} "
            f"(left out: {skipped})"
        )
    # Split num_prompts evenly over categories; the first categories take the remainder.
    cats = sorted(by_category)
    total = cfg.total()
    prompts: list[Prompt] = []
    for i, cat in enumerate(cats):
        rows = by_category[cat]
        want = len(rows) if total is None else total // len(cats) + (1 if i < total % len(cats) else 0)
        prompts.extend(rows[j] for j in _spread(len(rows), want))
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"duplicate prompt ids in {[str(f) for f in files]}: ids must be unique per category"
        )
    return PromptSet(prompts, skipped)
