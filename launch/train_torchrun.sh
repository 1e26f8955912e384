#!/usr/bin/env bash
# One node or many with torchrun; every argument is a Hydra override for `python -m train`.
#   single node:  bash launch/train_torchrun.sh deepspeed=zero2 train.max_steps=300
#   multi-node:   NNODES=2 NODE_RANK=<0|1> MASTER_ADDR=<node0 host> bash launch/train_torchrun.sh ...
#                 (run on every node; the c10d rendezvous at MASTER_ADDR:MASTER_PORT gathers them)
#   DRY_RUN=1 prints the command instead of running it.
# NPROC defaults to the GPUs of this node (2 CPU ranks without GPUs). Ranks exit 75 after a signal-triggered
# checkpoint (see train/preemption.py); rerun with resume=true to continue.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1; then NPROC="${NPROC:-$(nvidia-smi -L | wc -l)}"; else NPROC="${NPROC:-2}"; fi
NNODES="${NNODES:-1}"
if [ "$NNODES" = 1 ]; then
  rdzv=(--standalone)
else
  : "${MASTER_ADDR:?set MASTER_ADDR to the host name of node 0 for a multi-node run}"
  rdzv=(--nnodes "$NNODES" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:${MASTER_PORT:-29500}"
        --rdzv-id "${RDZV_ID:-draftforge}")
fi
# torchrun forwards USR1/USR2 to the ranks (default: TERM, INT, HUP, QUIT only) and gives them time to save.
cmd=(python -m torch.distributed.run "${rdzv[@]}" --nproc-per-node "$NPROC"
     --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2
     --shutdown-timeout "${SHUTDOWN_TIMEOUT:-110}" -m train "$@")
if [ -n "${DRY_RUN:-}" ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
exec "${cmd[@]}"
