#!/usr/bin/env bash
# The MLP race behind the modern block's default MLP (bench/results/mlp-race-*.json): ReLU² against SwiGLU at equal
# parameters (SwiGLU's d_ff is the parameter-matched 2/3 of 4 x d_model) and equal tokens, `tiny`, seeds 1 and 2,
# 120 steps of 16 x 128 tokens, each run scored by `lmtrain eval RUN --split valid`; on the built-in sample and on
# ../shared/data/linux-docs (GPT-2 BPE). Then the learning-rate check (mlp-lr-check-cpu-2core.json): the race ran
# at the preset's LR (0.004), chosen with ReLU²; on the sample SwiGLU is tried at 0.0028, 0.0057 and 0.008 and ReLU²
# at 0.0057, and both at 0.0057 run again on linux-docs.
# Usage: bench/mlp_race.sh [OUT_DIR]; LINUX_DOCS=folder (default ../shared/data/linux-docs), STEPS (default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
LMTRAIN=${LMTRAIN:-.venv/bin/lmtrain}
WORK=${WORK:-runs/bench-mlp}
DOCS=${LINUX_DOCS:-../shared/data/linux-docs}
STEPS=${STEPS:-120}
mkdir -p "$OUT"
rm -rf "$WORK"
RACE=(bench recipe bench/mlp/relu2.toml bench/mlp/swiglu.toml --seeds 1 2 --preset tiny --device cpu
      --seq-len 128 --batch-size 16 --max-steps "$STEPS")
$LMTRAIN "${RACE[@]}" --dataset sample --workdir "$WORK/sample" --out "$OUT/mlp-race-sample-cpu-2core.json"
$LMTRAIN "${RACE[@]}" --dataset text --data-dir "$DOCS" --workdir "$WORK/linux-docs" \
    --out "$OUT/mlp-race-linux-docs-cpu-2core.json"
LR=(--seeds 1 2 --preset tiny --device cpu --seq-len 128 --batch-size 16 --max-steps "$STEPS")
$LMTRAIN bench recipe bench/mlp/swiglu-lr0028.toml bench/mlp/swiglu-lr0057.toml bench/mlp/swiglu-lr008.toml \
    bench/mlp/relu2-lr0057.toml "${LR[@]}" --dataset sample --workdir "$WORK/lr-sample" --out "$WORK/lr-sample.json"
$LMTRAIN bench recipe bench/mlp/swiglu-lr0057.toml bench/mlp/relu2-lr0057.toml "${LR[@]}" --dataset text \
    --data-dir "$DOCS" --workdir "$WORK/lr-linux-docs" --out "$WORK/lr-linux-docs.json"
${PYTHON:-.venv/bin/python} bench/mlp_lr_check.py --out "$OUT/mlp-lr-check-cpu-2core.json" \
    sample="$OUT/mlp-race-sample-cpu-2core.json" sample="$WORK/lr-sample.json" \
    linux-docs="$OUT/mlp-race-linux-docs-cpu-2core.json" linux-docs="$WORK/lr-linux-docs.json"
