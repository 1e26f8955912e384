"""Build eval/assets/tasks.jsonl: prompts in the categories of the public speculative-decoding benchmarks
(MT-bench / Spec-Bench), made only from the HELD-OUT half of the shipped corpus, so the tiny default has
task categories without any download:

    python -m builders.tasks            # rewrites eval/assets/tasks.jsonl (deterministic)

- multi_turn: held-out dialogues with several turns, cut before the last assistant reply; plus pairs of
  single-turn dialogues from one source stitched into a two-turn conversation.
- code: a documentation passage that introduces a code block, ending after the block's first line
  (raw text: the target continues the code as it would in the docs).
- math: interpreter sessions from the docs ending at an arithmetic `>>>` line (the target writes the
  result), and chat questions asking for arithmetic on numbers that appear in the docs.
- instruction: chat requests with an explicit instruction (one sentence, a list, an example) about a
  section title of the held-out docs.
- qa: held-out single-turn questions (chatterbot trivia and the Python FAQ).
- summarization: "Summarize the following text" over a paragraph of the held-out docs.
"""

from __future__ import annotations

import gzip
import json
import re

from data.embedded_paths import CORPUS_DIR
from eval.prompts import TASKS_FILE

PER_CATEGORY = 16


def _read(name: str) -> list[dict]:
    with gzip.open(CORPUS_DIR / name, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _spread(items: list, n: int) -> list:
    """n items evenly spaced over the list (deterministic, covers all sources)."""
    return items if len(items) <= n else [items[(i * len(items)) // n] for i in range(n)]


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def multi_turn(dialogues: list[dict]) -> list[dict]:
    out = []
    for d in dialogues:
        msgs = d["messages"]
        last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=0)
        if last_user >= 2:  # at least one full exchange before the final question
            out.append({"id": d["id"], "messages": msgs[: last_user + 1]})
    singles = [d for d in dialogues if len(d["messages"]) == 2]
    by_source: dict[str, list[dict]] = {}
    for d in singles:
        by_source.setdefault(d["source"], []).append(d)
    for source in sorted(by_source):
        group = by_source[source]
        for a, b in zip(group[0::2], group[1::2], strict=False):
            out.append(
                {
                    "id": f"{a['id']}+{b['id'].rsplit('/', 1)[-1]}",
                    "messages": [*a["messages"], b["messages"][0]],
                }
            )
    return _spread(out, PER_CATEGORY)


def code(docs: list[dict]) -> list[dict]:
    out = []
    for d in docs:
        for m in re.finditer(r"::\n\n((?: {2,}\S[^\n]*\n)+)", d["text"]):
            first = m.group(1).splitlines()[0]
            if len(first.strip()) < 12 or first.strip().startswith((">>>", "$")):
                continue
            start = max(0, m.start() - 600)
            out.append(
                {
                    "id": f"{d['id']}@{m.start()}",
                    "text": d["text"][start : m.start()] + "::\n\n" + first + "\n",
                }
            )
    return _spread(out, PER_CATEGORY)


def math(docs: list[dict]) -> list[dict]:
    out = []
    for d in docs:
        for m in re.finditer(r"^ *>>> ([^\n#]*\d[^\n#]*[-+*/%][^\n#]*)$", d["text"], re.M):
            if "=" in m.group(1).replace("==", ""):
                continue  # an assignment prints nothing: no answer to predict
            start = max(0, m.start() - 400)
            out.append({"id": f"{d['id']}@{m.start()}", "text": d["text"][start : m.end()] + "\n"})
    numbers = sorted({int(n) for d in docs for n in re.findall(r"\b(\d{1,3})\b", d["text"]) if int(n) > 1})
    ops = [("+", "the sum of"), ("*", "the product of"), ("-", "the difference between")]
    picks = _spread(numbers, PER_CATEGORY)
    for i, (a, b) in enumerate(zip(picks, reversed(picks), strict=True)):
        op, words = ops[i % len(ops)]
        q = f"What is {words} {a} and {b}? Write it as a Python expression and give the result of {a} {op} {b}."
        out.append({"id": f"arith/{i:02d}", "messages": [_user(q)]})
    half = PER_CATEGORY // 2
    doc_part, chat_part = [r for r in out if "text" in r], [r for r in out if "messages" in r]
    return _spread(doc_part, half) + _spread(chat_part, PER_CATEGORY - min(half, len(doc_part)))


def _titles(docs: list[dict]) -> list[tuple[str, str]]:
    found = []
    for d in docs:
        for m in re.finditer(r"^([A-Za-z][^\n]{8,60})\n[-=~^]{8,}\n", d["text"], re.M):
            found.append((d["id"], m.group(1).strip().strip("`:*").rstrip("?")))
    return found


def instruction(docs: list[dict]) -> list[dict]:
    templates = [
        "Explain {t} in exactly one sentence.",
        "List three key points about {t}, as a numbered list.",
        "Write a short Python example that illustrates {t}, then explain it in two sentences.",
        "Describe {t} to a beginner without using any code.",
    ]
    titles = _spread(_titles(docs), PER_CATEGORY)
    return [
        {"id": f"{doc}#{i}", "messages": [_user(templates[i % len(templates)].format(t=title))]}
        for i, (doc, title) in enumerate(titles)
    ]


def qa(dialogues: list[dict]) -> list[dict]:
    rows = [
        d for d in dialogues if len(d["messages"]) == 2 and d["messages"][0]["content"].rstrip().endswith("?")
    ]
    faq = [d for d in rows if d["source"].startswith("python-faq")]
    other = [d for d in rows if not d["source"].startswith("python-faq")]
    half = PER_CATEGORY // 2
    picked = _spread(faq, half) + _spread(other, PER_CATEGORY - min(half, len(faq)))
    return [{"id": d["id"], "messages": d["messages"][:1]} for d in picked]


def summarization(docs: list[dict]) -> list[dict]:
    out = []
    for d in docs:
        for j, para in enumerate(re.split(r"\n\s*\n", d["text"])):
            flat = " ".join(para.split())
            if 400 <= len(flat) <= 900 and not para.startswith((" ", ".. ")):
                out.append(
                    {"id": f"{d['id']}#p{j}", "messages": [_user(f"Summarize the following text:\n\n{flat}")]}
                )
    return _spread(out, PER_CATEGORY)


def build() -> list[dict]:
    dialogues, docs = _read("dialogues_valid.jsonl.gz"), _read("pydocs_valid.jsonl.gz")
    makers = {"multi_turn": lambda: multi_turn(dialogues), "code": lambda: code(docs),
              "math": lambda: math(docs), "instruction": lambda: instruction(docs),
              "qa": lambda: qa(dialogues), "summarization": lambda: summarization(docs)}  # fmt: skip
    rows = []
    for category, make in makers.items():
        made = make()
        if not made:
            raise RuntimeError(f"no {category} prompts could be built from {CORPUS_DIR}")
        rows += [{"category": category, **r, "id": f"{category}/{r['id']}"} for r in made]
    return rows


def main() -> None:
    rows = build()
    TASKS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TASKS_FILE.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
    print(f"wrote {len(rows)} prompts to {TASKS_FILE}: {counts}")


if __name__ == "__main__":
    main()
