#!/usr/bin/env bash
# Continuing a trained model on an own corpus, on this machine, as recorded in bench/results/finetune-*.json:
# a modern `tiny` pretrained on the built-in sample (PRETRAIN steps of 8 x 128 tokens, its preset's defaults) is
# exported as a transformers folder, then
#   1. the race and sweep behind --init-from's defaults: AdamW against Muon (--muon-lr 3 x --lr), peak LR 1e-4, 3e-4,
#      1e-3 and 3e-3, each 40 steps of 8 x 128 tokens on ../shared/data/linux-docs (the validation loss at the end);
#   2. end to end: --init-from that export, with the defaults and with the scratch run's settings, and a start
#      pretrained on linux-docs itself (bench/finetune_strong.sh), against the same `tiny` from scratch (its own
#      defaults), STEPS steps each at equal tokens and tokenizer (GPT-2 BPE), the validation loss every 25 steps,
#      then each model on 50 items of each CORE task; and how much of linux-docs' text the sample's tokens cover
#      (bench/unigram_overlap.py).
# Usage: bench/finetune.sh [OUT_DIR]; LINUX_DOCS=folder (default ../shared/data/linux-docs), STEPS (default 150),
# PRETRAIN (default 300), SWEEP=0 (skip the race and sweep; its results file is then left as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
LMTRAIN=${LMTRAIN:-.venv/bin/lmtrain}
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-runs/bench-finetune}
DOCS=${LINUX_DOCS:-../shared/data/linux-docs}
STEPS=${STEPS:-150}
PRETRAIN=${PRETRAIN:-300}
mkdir -p "$OUT" "$WORK"
if [ -z "${LMTRAIN_DATA_DIR:-}" ] && [ -d ../shared/data ]; then  # the CORE task files, as the Makefile finds them
    export LMTRAIN_DATA_DIR="$(cd ../shared/data && pwd)"
fi
COMMON=(--dataset text --data-dir "$DOCS" --batch-size 8 --seq-len 128 --eval-windows 64 --sample-tokens 0 --log-every 25
        --save-every 0 --doctor off --log jsonl)

[ -f "$WORK/pretrain/checkpoints/best" ] || { rm -rf "$WORK/pretrain"; $LMTRAIN train --preset tiny --arch modern \
    --dataset sample --batch-size 8 --seq-len 128 --max-steps "$PRETRAIN" --eval-every 100 --save-every 0 \
    --sample-tokens 0 --log-every 50 --doctor off --log jsonl --out "$WORK/pretrain"; }
[ -d "$WORK/start-hf" ] || $LMTRAIN export "$WORK/pretrain" --out "$WORK/start-hf"

for opt in $([ "${SWEEP:-1}" = 0 ] || echo adamw muon); do  # SWEEP=0: the runs after it only
    for lr in 1e-4 3e-4 1e-3 3e-3; do
        run="$WORK/sweep-$opt-$lr"
        [ -f "$run/metrics.jsonl" ] && grep -q '"event": "end"' "$run/metrics.jsonl" && continue
        rm -rf "$run"
        $LMTRAIN train --init-from "$WORK/start-hf" "${COMMON[@]}" --max-steps 40 --eval-every 0 \
            --optimizer "$opt" --lr "$lr" --out "$run"
    done
done

# init: --init-from's defaults; init-far: the scratch run's own settings (its optimizer, LR and schedule), what the
# docs advise for a start far from the target; near: the start pretrained on linux-docs (bench/finetune_strong.sh)
# continued with the defaults, for a start that already knows the target's kind of text.
[ -d "$WORK/strong-hf" ] || bash bench/finetune_strong.sh
for name in init init-far near scratch; do
    run="$WORK/e2e-$name"
    if ! { [ -f "$run/metrics.jsonl" ] && grep -q '"event": "end"' "$run/metrics.jsonl"; }; then
        rm -rf "$run"
        case $name in
            init) start=(--init-from "$WORK/start-hf") ;;
            init-far) start=(--init-from "$WORK/start-hf" --optimizer muon --lr 4e-3 --schedule cosine) ;;
            near) start=(--init-from "$WORK/strong-hf" --seed 7) ;;
            scratch) start=(--preset tiny --arch modern) ;;
        esac
        $LMTRAIN train "${start[@]}" "${COMMON[@]}" --max-steps "$STEPS" --eval-every 25 --out "$run"
    fi
    [ -s "$WORK/e2e-$name-core.json" ] || $LMTRAIN eval "$run" --tasks core --max-per-task 50 --json \
        > "$WORK/e2e-$name-core.json"
done
$LMTRAIN eval "$WORK/start-hf" --dataset text --data-dir "$DOCS" --split valid --context 128 --json > "$WORK/start-hf-eval.json"
$LMTRAIN eval "$WORK/start-hf" --dataset text --data-dir "$DOCS" --split valid --context 128 --windows 64 --json \
    > "$WORK/start-hf-eval-windows.json"  # the windows the runs validate on: their step-0 loss
"$PY" bench/unigram_overlap.py ../shared/data/wikitext-sample-raw/wiki.train.raw "$DOCS" > "$WORK/overlap.json"

"$PY" bench/finetune_results.py "$WORK" "$OUT"
