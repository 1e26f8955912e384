"""The shell commands the README and docs/ print, read from the pages themselves so tests run them as printed."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from data.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"


def section_commands(heading: str, page: Path = README) -> list[str]:
    """Commands in the first ```bash block under `heading` of `page`: comments dropped, `\\` continuations
    joined."""
    text = page.read_text()
    start = text.index(heading)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, f"no ```bash block under {heading!r} in {page}"
    joined = block.group(1).replace("\\\n", " ")
    return [
        " ".join(line.split()) for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def shell_env(**extra: str) -> dict[str, str]:
    """The environment a printed command runs in: `python` is this interpreter, the repo's packages first."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(REPO_ROOT), **extra}
