#!/usr/bin/env bash
# One node or many with the DeepSpeed launcher; every argument is a Hydra override for `python -m train`.
#   single node:  bash launch/train_deepspeed.sh deepspeed=zero2
#   multi-node:   HOSTFILE=launch/hostfile.example bash launch/train_deepspeed.sh ...   (pdsh/ssh to each host)
#   DRY_RUN=1 prints the command instead of running it.
# --no_local_rank: the launcher would append --local_rank=N, which Hydra rejects as an override; the ranks
# read LOCAL_RANK from the environment instead (train/distributed.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1; then NPROC="${NPROC:-$(nvidia-smi -L | wc -l)}"; else NPROC="${NPROC:-2}"; fi
if [ -n "${HOSTFILE:-}" ]; then
  hosts=(--hostfile "$HOSTFILE" --master_addr "${MASTER_ADDR:-$(awk '!/^#/ && NF {print $1; exit}' "$HOSTFILE")}"
         --master_port "${MASTER_PORT:-29500}")
else
  hosts=(--num_gpus "$NPROC")
fi
cmd=(deepspeed --no_local_rank "${hosts[@]}" --module train "$@")
if [ -n "${DRY_RUN:-}" ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
exec "${cmd[@]}"
