#!/usr/bin/env bash
# The main job on the embedded default: pretrain an EAGLE head against the shipped 16-layer Llama (deep-llama)
# with DeepSpeed on 2 CPU ranks (or every GPU of this node), then measure acceptance and the speed-up over the
# target alone with real speculative decoding (chain of 2 drafts: the fastest of k = 2, 3, 4 and trees measured
# on this target, docs/evaluation.md). Extra arguments are Hydra overrides for the training run, e.g.
# `bash launch/quickstart.sh target=tiny-qwen2`. Running it again resumes (or, when finished, just re-exports and
# re-evaluates) the same run. DRY_RUN=1 prints the two commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
if command -v nvidia-smi >/dev/null 2>&1; then NPROC="${NPROC:-$(nvidia-smi -L | wc -l)}"; else NPROC="${NPROC:-2}"; fi
RUN="${RUN:-quickstart}"
TARGET=deep-llama
for arg in "$@"; do case "$arg" in target=*) TARGET="${arg#target=}" ;; esac; done

train=(python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m train target="$TARGET"
  run_name="$RUN" resume=true train.max_steps=500 train.eval_every=250 train.save_every=250)
for arg in "$@"; do case "$arg" in target=*) ;; *) train+=("$arg") ;; esac; done
evaluate=(python -m eval target="$TARGET" draft_path="outputs/$RUN/export" output_dir="outputs/$RUN/eval"
  mode=chain draft_length=2 prompts.num_prompts=32 cpu_threads=1)
if [ -n "${DRY_RUN:-}" ]; then printf '%q ' "${train[@]}"; echo; printf '%q ' "${evaluate[@]}"; echo; exit 0; fi
"${train[@]}"
"${evaluate[@]}"
