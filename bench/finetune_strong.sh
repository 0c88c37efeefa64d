#!/usr/bin/env bash
# The second race and sweep behind --init-from's defaults, from a start that is already good at the target's kind of
# text (as a released model is): a modern `tiny` pretrained on ../shared/data/linux-docs for PRETRAIN steps of
# 8 x 128 tokens (its preset's defaults), exported, then continued on the same corpus (the steps after: other
# windows of the same training split, as the data order continues with a new seed) with AdamW and with Muon
# (--muon-lr 3 x --lr) at peak LR 1e-4, 3e-4 and 1e-3, 40 steps each. bench/finetune_results.py collects it.
# Usage: bench/finetune_strong.sh; LINUX_DOCS=folder (default ../shared/data/linux-docs), PRETRAIN (default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
LMTRAIN=${LMTRAIN:-.venv/bin/lmtrain}
WORK=${WORK:-runs/bench-finetune}
DOCS=${LINUX_DOCS:-../shared/data/linux-docs}
PRETRAIN=${PRETRAIN:-200}
mkdir -p "$WORK"
COMMON=(--dataset text --data-dir "$DOCS" --batch-size 8 --seq-len 128 --eval-windows 64 --sample-tokens 0
        --log-every 25 --save-every 0 --doctor off --log jsonl)

[ -f "$WORK/strong-pretrain/checkpoints/best" ] || { rm -rf "$WORK/strong-pretrain"; $LMTRAIN train --preset tiny \
    --arch modern "${COMMON[@]}" --max-steps "$PRETRAIN" --eval-every 100 --out "$WORK/strong-pretrain"; }
[ -d "$WORK/strong-hf" ] || $LMTRAIN export "$WORK/strong-pretrain" --out "$WORK/strong-hf"
for opt in $([ "${SWEEP:-1}" = 0 ] || echo adamw muon); do  # SWEEP=0: the runs after it only
    for lr in 1e-4 3e-4 1e-3; do
        run="$WORK/strong-$opt-$lr"
        [ -f "$run/metrics.jsonl" ] && grep -q '"event": "end"' "$run/metrics.jsonl" && continue
        rm -rf "$run"
        $LMTRAIN train --init-from "$WORK/strong-hf" "${COMMON[@]}" --max-steps 40 --eval-every 0 --seed 7 \
            --optimizer "$opt" --lr "$lr" --out "$run"
    done
done
