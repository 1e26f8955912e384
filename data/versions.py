"""The oldest releases the code works with, checked once when `data`, `train` or `eval` is imported.

transformers 5.0.0 is the floor: the draft heads build their rotary tables from `rope_parameters` (a 4.x
LlamaConfig ignores that key and falls back to theta 10000: silently wrong positions for every target that
sets another theta or a scaling), and models load with `dtype=` (4.56+). The tests of the cache, rotary,
chat-template and lossless-decoding code pass under 5.0.0 (docs/targets.md, "Versions", says how).
An older install stops with one line and exit 2 instead of training with wrong rotary settings.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.version import InvalidVersion, Version

TRANSFORMERS_MIN = "5.0.0"


def transformers_problem(installed: str | None) -> str | None:
    """The one-line reason this transformers cannot be used, or None when it can."""
    if installed is None:
        return f"draftforge needs transformers>={TRANSFORMERS_MIN}, which is not installed"
    try:
        too_old = Version(installed) < Version(TRANSFORMERS_MIN)
    except InvalidVersion:
        return None  # a source build with an odd version string: let it run rather than guess
    if too_old:
        return (
            f"draftforge needs transformers>={TRANSFORMERS_MIN}, found {installed} (4.x ignores "
            f"`rope_parameters`, so rotary settings would be silently wrong): "
            f"pip install 'transformers>={TRANSFORMERS_MIN}'"
        )
    return None


def require_transformers() -> None:
    try:
        installed = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        installed = None
    problem = transformers_problem(installed)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
