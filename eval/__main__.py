"""`python -m eval`: Hydra composes conf/eval.yaml -> typed EvalConfig -> inputs checked -> evaluate()."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from data.paths import CONF_DIR, register_resolvers
from eval.config import to_eval_config
from eval.inputs import check_inputs, use_recorded_target
from eval.run import evaluate
from eval.vllm_backend.run import evaluate_vllm

register_resolvers()


def chosen_target_keys() -> set[str]:
    """Which of `target` (a conf/target option), `target.name_or_path`, `target.tokenizer` the user set."""
    keys = {o.lstrip("+~").split("=")[0] for o in HydraConfig.get().overrides.task}
    return keys & {"target", "target.name_or_path", "target.tokenizer"}


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        typed = use_recorded_target(to_eval_config(cfg), chosen_target_keys())
        check_inputs(typed)  # before the target loads: a wrong path costs a second, not a model load
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if typed.engine == "vllm":
        evaluate_vllm(typed)
    else:
        evaluate(typed)


if __name__ == "__main__":
    main()
