#!/usr/bin/env bash
# The Scylla-law sweep on the tiny default (2 CPU cores), then the fits and one planner answer:
#   (a) tokens: six pretraining budgets 12.5k..400k target tokens (2x apart), depth 2   conf/sweep/tiny-tokens.yaml
#   (b) depth:  1, 2, 4, 8 at 100k tokens (depth 2 is (a)'s 100k point, not retrained)  conf/sweep/tiny-depth.yaml
#   (c) batch:  decoding batch size 1..64, chain and trees of 4, 8, 24, one draft of (a) conf/sweep/tiny-batch.yaml
# Each is a Hydra multirun of `python -m eval.laws.point`; results in outputs/sweeps/$NAME/results.{jsonl,csv},
# fits in laws.json + law_*.png (`python -m eval.laws`), then `python -m eval.plan`.
# Budgets are separate runs, each with its own warmup + cosine schedule sized to its length (the trainer
# sizes the schedule from train.max_tokens): the trainer has no warmup-stable-decay schedule or branching
# from a mid-run checkpoint with its optimizer state, and at this scale all six runs together cost less than
# 2x the largest one (a geometric series), which WSD branches would cut only to ~1.2x.
# Resumable: rerun after an interruption; a finished point is skipped, a finished training or eval reused.
# Past the grid: `python -m eval.laws.point -m --config-name sweep/tiny-tokens name=$NAME tokens=800000,1600000`
# adds budgets; `python -m eval.laws outputs/sweeps/$NAME` then fits above the servable layout's warm-up, where
# its rule puts it (eval/laws/warmup.py; `--min-tokens N` overrides the rule; docs/scaling-laws.md).
# GRID=tiny-scale AXES="tokens depth" runs the larger grid instead (conf/sweep/tiny-scale-*.yaml: 50k..1.6M tokens,
# depth 1/2/4/8 at 1.6M, 64 prompts x 64 tokens a point; ~1 h 50 min on 2 cores) into outputs/sweeps/tiny-scale.
# AXES="tokens depth" limits the axes; extra arguments go to every multirun (e.g. tracking=none), so one
# `target=<conf/target option>` or `target.name_or_path=<folder>` retargets the whole sweep (as for recipes).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export WANDB_MODE="${WANDB_MODE:-offline}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
GRID="${GRID:-tiny}"
NAME="${NAME:-$GRID}"
AXES="${AXES:-tokens depth batch}"
for axis in $AXES; do
  start=$SECONDS
  python -m eval.laws.point -m --config-name "sweep/$GRID-$axis" "name=$NAME" "$@"
  echo "[sweep_tiny] axis $axis: $((SECONDS - start)) s"
done
python -m eval.laws "outputs/sweeps/$NAME"
# 2x the FLOPs of the tiny grid's largest training (2e13 FLOPs at 400k tokens, depth 2) at serving batch 16.
python -m eval.plan "outputs/sweeps/$NAME/laws.json" --compute "${PLAN_COMPUTE:-4e13}" --batch 16
