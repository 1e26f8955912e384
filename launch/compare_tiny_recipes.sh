#!/usr/bin/env bash
# Every recipe on the tiny default at the same budget (600k target tokens each, padding excluded), then one
# `eval.compare` table on the same 64 prompts at temperature 0 and 1: outputs/compare-tiny/compare.{csv,png}.
# scylla1 is the Scylla recipe with a 1-layer head (EAGLE-3's architecture): recipe vs depth.
# SEEDS="0 1 2" trains each recipe once per seed (seed 0 in outputs/experiments/<recipe>-tiny, seed s in
# <recipe>-tiny-s<s>) and pools a recipe's seeds into one entry: its tau interval resamples seeds, then prompts.
# Each pipeline resumes or skips what is finished, and eval.compare reads back every eval it already made of an
# unchanged export with the same settings, so rerunning after an interruption (or with more SEEDS) continues.
# RECIPES="scylla eagle3" limits the set; PROMPTS=32 decodes fewer prompts; extra arguments are eval overrides
# for compare (e.g. mode=chain).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
RECIPES="${RECIPES:-scylla scylla1 eagle2 eagle3 medusa dense}"
SEEDS="${SEEDS:-0}"
entries=()
for r in $RECIPES; do
  runs=()
  for s in $SEEDS; do
    name="$r-tiny"
    [ "$s" = 0 ] || name="$r-tiny-s$s"
    # The pipeline's own eval is kept short here: the comparison below is the measurement.
    python -m train.pipeline "experiment=$r-tiny" "name=$name" "seed=$s" \
      'eval=["target=tiny-llama","prompts.num_prompts=8","cpu_threads=1"]'
    runs+=("outputs/experiments/$name")
  done
  entries+=("$r=$(IFS=,; echo "${runs[*]}")")
done
python -m eval.compare "${entries[@]}" --target tiny-llama --temperatures 0 1 --num-prompts "${PROMPTS:-64}" \
  --out outputs/compare-tiny --overrides "$@"
