"""docs/dflash.md's training lines compose as printed: the draft, the stage and its seed are the ones named."""

from __future__ import annotations

import subprocess

import yaml

from data.paths import REPO_ROOT
from tests.readme_blocks import DOCS, section_commands, shell_env

LAUNCH = "torchrun --standalone --nproc_per_node 2 -m train"


def test_dflash_training_lines_compose() -> None:
    commands = section_commands("## Run it", DOCS / "dflash.md")
    assert [c.split("stage=")[1].split()[0] for c in commands] == ["pretrain", "sft", "distill"]
    for command in commands:
        assert command.startswith(LAUNCH), command
        one_process = (
            command.replace(LAUNCH, "python -m train") + " --cfg job"
        )  # Hydra composes, runs nothing
        proc = subprocess.run(["bash", "-c", one_process], cwd=REPO_ROOT, env=shell_env(), capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
        cfg = yaml.safe_load(proc.stdout)
        assert cfg["draft"]["name"] == "dflash" and cfg["draft"]["block_size"] == 4
        stage = command.split("stage=")[1].split()[0]
        assert cfg["stage"]["name"] == stage
        if stage != "pretrain":
            assert cfg["stage"]["init_from"].endswith("/export")
