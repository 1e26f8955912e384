"""Where the clone is, for configs: `${repo:data/embedded/...}` resolves against the clone, so a run finds the
shipped assets whatever directory it is started from. The one home of the `repo` resolver: training, eval and
`python -m data` all register it from here."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("repo"):
        OmegaConf.register_new_resolver("repo", lambda rel: str(REPO_ROOT / rel))
