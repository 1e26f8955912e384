"""`python -m train`: compose the Hydra config, convert it once to the typed schema, run."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from data.paths import CONF_DIR, register_resolvers

# Imported first: it registers the schema (`train_schema`) that conf/train.yaml composes onto.
from train.config import ConfigError, check_paths, to_typed

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        typed = to_typed(cfg)
        check_paths(typed)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    # Imported late: DeepSpeed's import is slow, and a bad config should fail quickly.
    from data.cache_reader import CacheMismatch
    from data.validate import DataValidationError
    from train.trainer import run

    try:
        run(typed)
    # Bad records, a cache for other data, a batch that does not fit the world size: no traceback.
    except (DataValidationError, CacheMismatch, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
