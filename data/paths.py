"""Where the clone is, for configs: `${repo:data/embedded/...}` resolves against the clone, so a run finds the
shipped assets whatever directory it is started from. The one home of the config resolvers: training, eval,
the pipeline and `python -m data` all register them from here."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"


def target_key(name_or_path: str, tokenizer: str | None = None) -> str:
    """A file-name-safe key for one target + tokenizer, so files made per target (regenerated answers) of
    two targets never share a name: the folder or model name plus a short hash of both sources."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(name_or_path)).name) or "target"
    digest = hashlib.sha256(f"{name_or_path}\0{tokenizer or ''}".encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def scale_budget(amount: int | str, scale: float | str, floor: int | str = 1) -> int:
    """A recipe's token or prompt budget times its budget scale (DRAFTFORGE_BUDGET_SCALE), at least `floor`."""
    return max(int(floor), round(int(amount) * float(scale)))


def register_resolvers() -> None:
    resolvers = {
        "repo": lambda rel: str(REPO_ROOT / rel),
        "target_key": target_key,
        "budget": scale_budget,
        # `${or:a,b}`: a unless it is null or empty (a target's tokenizer, else the target itself).
        "or": lambda a, b: a if a not in (None, "") else b,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
