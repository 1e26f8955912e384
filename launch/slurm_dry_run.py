"""Print the sbatch script that `python -m train -m hydra/launcher=slurm <overrides>` would submit, without
submitting anything (the Hydra-launcher counterpart of `DRY_RUN=1 bash launch/train.sbatch`).

    python launch/slurm_dry_run.py hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=8 \
        hydra.launcher.tasks_per_node=8 run_name=my-run deepspeed=zero2
"""

from __future__ import annotations

import sys

import submitit
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

import train.config  # noqa: F401  registers `train_schema`, which conf/train.yaml composes onto
from data.paths import CONF_DIR, register_resolvers


def sbatch_text(overrides: list[str]) -> str:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="train"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(params, dict)
    params.pop("_target_")
    folder = params.pop("submitit_folder")
    # The same translation Hydra's submitit launcher makes before it submits.
    executor = submitit.AutoExecutor(
        folder=folder, cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    inner = executor._executor
    return inner._make_submission_file_text(inner._submitit_command_str, "<uid>")


if __name__ == "__main__":
    print(sbatch_text(sys.argv[1:]))
