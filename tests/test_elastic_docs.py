"""docs/elastic.md's commands run as printed: the training lines are composed by Hydra (`--cfg job`; a real
run of each is the elastic kill -9 test's job), the SLURM line is the template's own dry run."""

from __future__ import annotations

import re
import subprocess

from data.paths import REPO_ROOT
from tests.readme_blocks import shell_env

DOC = REPO_ROOT / "docs" / "elastic.md"


def doc_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    assert block, f"no ```bash block in {DOC}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_elastic_doc_commands_run_as_printed() -> None:
    commands = doc_commands()
    assert len(commands) == 5, commands
    for command in commands:
        dry = command.startswith("DRY_RUN=1 ")
        proc = subprocess.run(
            ["bash", "-c", command if dry else command + " --cfg job"],
            cwd=REPO_ROOT,
            env=shell_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        if dry:
            assert "-m train run_name=my-run deepspeed=zero2 train.global_batch_size=512" in proc.stdout
        else:
            assert "run_name: elastic-demo" in proc.stdout, proc.stdout[-2000:]
