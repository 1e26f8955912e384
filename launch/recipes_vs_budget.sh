#!/usr/bin/env bash
# Recipe vs budget (issue 13 item 5): the tiny scylla, scylla1, eagle3 and eagle2 recipes at three total
# budgets, each a whole recipe with every stage's tokens times SCALES' factor (budget_scale; 1 = 600k target
# tokens), then one `eval.compare` per budget on the same 32 prompts, and the table + plot over budgets:
#   outputs/recipes-vs-budget/s<scale>/compare.csv, table.{csv,md}, tau_vs_budget.png (python -m eval.laws.recipes)
# Default scales 1/32, 1/8, 1/4 (18.75k, 75k, 150k nominal tokens: 8x apart end to end; est. 30-40 min on 2
# quiet cores). Below ~1/32 a stage's one-step minimum (32 x 512-token chats) sets the tokens, not the scale.
# The regenerated answers are made once at full size, so every budget draws on the same pool.
# Resumable: each pipeline skips finished stages; a budget with a compare.csv is not re-measured.
# RECIPES, SCALES, TEMPS and OUT override the defaults; extra arguments go to every pipeline (e.g. logger=none);
# the comparison decodes against tiny-llama.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export WANDB_MODE="${WANDB_MODE:-offline}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
RECIPES="${RECIPES:-scylla scylla1 eagle3 eagle2}"
SCALES="${SCALES:-0.03125 0.125 0.25}"
TEMPS="${TEMPS:-0}"
OUT="${OUT:-outputs/recipes-vs-budget}"
python -m eval.laws.recipes regenerate "$@"
for s in $SCALES; do
  pairs=()
  for r in $RECIPES; do
    # The pipeline's own eval is kept minimal: the comparison below is the measurement.
    python -m train.pipeline "experiment=$r-tiny" "budget_scale=$s" "output_root=$OUT/s$s/$r" \
      'eval=["prompts.num_prompts=2","max_new_tokens=8","cpu_threads=1"]' "$@"
    pairs+=("$r=$OUT/s$s/$r")
  done
  if [[ ! -f "$OUT/s$s/compare.csv" ]]; then
    # shellcheck disable=SC2086  # TEMPS is a list of numbers
    python -m eval.compare "${pairs[@]}" --target tiny-llama --temperatures $TEMPS --num-prompts 32 --out "$OUT/s$s"
  fi
done
python -m eval.laws.recipes table "$OUT"
