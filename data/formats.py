"""Record formats: raw text, ShareGPT (`conversations` of `from`/`value`), OpenAI-style `messages`.

Everything chat-shaped is normalised to a list of `{"role", "content"}` turns with roles system / user /
assistant, then checked for the mistakes that silently break loss masks (assistant-first, two user turns
in a row, empty turns). Each problem is a `RecordError` whose message is the reason shown to the user.
"""

from __future__ import annotations

from typing import Any

FORMATS = ("auto", "text", "sharegpt", "messages")
ROLES = ("system", "user", "assistant")
# ShareGPT dumps use several spellings for the same speaker.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "system": "system",
}
SHAREGPT_OUT = {"user": "human", "assistant": "gpt", "system": "system"}

Messages = list[dict[str, str]]


class RecordError(ValueError):
    """One record is unusable; the message is the reason, the caller adds file and line."""


def detect_format(record: dict[str, Any], text_field: str) -> str:
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if text_field in record:
        return "text"
    raise RecordError(
        f"cannot tell the format: no 'messages', 'conversations' or {text_field!r} field "
        f"(fields: {sorted(record)[:8]})"
    )


# Which format a record's top-level field says it is in: the hint when another format was asked for.
FORMAT_OF_FIELD = {"messages": "messages", "conversations": "sharegpt"}


def _missing(record: dict[str, Any], key: str) -> RecordError:
    """`key` is absent; name the format the record looks like, since a wrong data.format fails every line."""
    for other, fmt in FORMAT_OF_FIELD.items():
        if other != key and other in record:
            return RecordError(f"no {key!r} field but a {other!r} field: use data.format={fmt} or auto")
    if key in FORMAT_OF_FIELD and "text" in record:
        return RecordError(f"no {key!r} field but a 'text' field: use data.format=text or auto")
    return RecordError(f"no {key!r} field (fields: {sorted(record)[:8]})")


def record_text(record: dict[str, Any], text_field: str) -> str:
    if text_field not in record:
        raise _missing(record, text_field)
    text = record[text_field]
    if not isinstance(text, str):
        raise RecordError(f"field {text_field!r} is {type(text).__name__}, not a string")
    if not text.strip():
        raise RecordError(f"field {text_field!r} is empty")
    return text


def _turns(record: dict[str, Any], key: str) -> list[Any]:
    if key not in record:
        raise _missing(record, key)
    turns = record[key]
    if not isinstance(turns, list):
        raise RecordError(f"{key!r} is {type(turns).__name__}, not a list of turns")
    if not turns:
        raise RecordError(f"{key!r} is empty")
    return turns


def record_messages(record: dict[str, Any], fmt: str) -> Messages:
    """Normalise a chat record to role/content turns (roles mapped, nothing else changed)."""
    out: Messages = []
    if fmt == "messages":
        role_key, content_key, names = "role", "content", {r: r for r in ROLES}
        turns = _turns(record, "messages")
    elif fmt == "sharegpt":
        turns = _turns(record, "conversations")
        # Some ShareGPT exports already use role/content inside `conversations`.
        first = turns[0] if isinstance(turns[0], dict) else {}
        role_key, content_key = ("from", "value") if "from" in first else ("role", "content")
        names = SHAREGPT_ROLES
    else:
        raise RecordError(f"format {fmt!r} is not a chat format")
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError(f"turn {i} is {type(turn).__name__}, not an object")
        if role_key not in turn:
            if fmt == "messages" and "from" in turn:  # ShareGPT turns under a `messages` key
                raise RecordError(
                    f"turn {i} has 'from'/'value', not 'role'/'content': use data.format=sharegpt"
                )
            raise RecordError(f"turn {i} has no {role_key!r}")
        if content_key not in turn:
            raise RecordError(f"turn {i} has no {content_key!r}")
        role, content = turn[role_key], turn[content_key]
        if role not in names:
            raise RecordError(f"turn {i} has unknown role {role!r} (expected one of {sorted(names)})")
        if not isinstance(content, str):
            raise RecordError(f"turn {i} ({role}) content is {type(content).__name__}, not a string")
        out.append({"role": names[role], "content": content})
    return out


def check_conversation(messages: Messages, need_assistant: bool = True) -> None:
    """An optional leading system turn, then user/assistant strictly alternating, starting with user."""
    body = messages[1:] if messages[0]["role"] == "system" else messages
    if not body:
        raise RecordError("only a system prompt, no user turn")
    for i, turn in enumerate(messages):
        if not turn["content"].strip():
            raise RecordError(f"turn {i} ({turn['role']}) is empty")
        if turn["role"] == "system" and i > 0:
            raise RecordError(f"turn {i} is a system prompt after the first turn")
    offset = len(messages) - len(body)
    if body[0]["role"] == "assistant":
        raise RecordError(f"turn {offset} is an assistant turn before any user turn")
    for j in range(1, len(body)):
        if body[j]["role"] == body[j - 1]["role"]:
            raise RecordError(
                f"turns {offset + j - 1} and {offset + j} are both {body[j]['role']} (must alternate)"
            )
    if need_assistant and not any(t["role"] == "assistant" for t in body):
        raise RecordError("no assistant turn (nothing to train on)")


def to_format(messages: Messages, fmt: str) -> dict[str, Any]:
    """The inverse of `record_messages`, used to write regenerated conversations in the input's format."""
    if fmt == "sharegpt":
        return {"conversations": [{"from": SHAREGPT_OUT[m["role"]], "value": m["content"]} for m in messages]}
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
