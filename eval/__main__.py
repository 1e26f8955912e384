"""`python -m eval`: Hydra composes conf/eval.yaml -> typed EvalConfig -> evaluate()."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from eval.config import to_eval_config
from eval.run import evaluate
from eval.vllm_backend.run import evaluate_vllm
from train.paths import CONF_DIR, register_resolvers

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    config = to_eval_config(cfg)
    if config.engine == "vllm":
        evaluate_vllm(config)
    else:
        evaluate(config)


if __name__ == "__main__":
    main()
