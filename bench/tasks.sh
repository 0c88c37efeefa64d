#!/usr/bin/env bash
# Benchmark-task scoring on this machine, as recorded in bench/results/: the batched scorer against the
# one-at-a-time reference (`tiny`, 100 items of each task), `make demo`'s model on 500 items of each of the 20 CORE
# tasks here (nanochat's per-task budget during training), and a `small` model on 100 items of each. Every item of
# all 20 tasks takes this 2-core CPU over an hour with `tiny` (docs/speed.md has the figures per task).
# Needs the task files: $LMTRAIN_DATA_DIR/core (the data mirror) or a download. Usage: bench/tasks.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
LMTRAIN=${LMTRAIN:-.venv/bin/lmtrain}
WORK=${WORK:-runs/bench-tasks}
mkdir -p "$OUT" "$WORK"

[ "${SKIP_BENCH:-}" ] || $LMTRAIN bench tasks --preset tiny --arch modern --max-per-task 100 \
    --out "$OUT/tasks-bench-tiny-cpu-2core.json"

make demo DEMO_DIR="$WORK/demo"
$LMTRAIN eval "$WORK/demo" --tasks core --max-per-task 500 --json --items-out "$WORK/demo-items.jsonl" \
    > "$OUT/core-demo-tiny-500-cpu-2core.json"

rm -rf "$WORK/small"
$LMTRAIN train --preset small --dataset sample --device cpu --max-steps 1 --batch-size 1 --warmup 0 --doctor off \
    --eval-windows 1 --sample-tokens 0 --log-every 1 --out "$WORK/small"
$LMTRAIN eval "$WORK/small" --tasks core --max-per-task 100 --json > "$OUT/core-small-100-cpu-2core.json"

# where they were measured, as lmtrain bench records it
for f in "$OUT/core-demo-tiny-500-cpu-2core.json" "$OUT/core-small-100-cpu-2core.json"; do
    "${PYTHON:-.venv/bin/python}" -c 'import json, sys; from lmtrain.bench import provenance
p = sys.argv[1]; d = json.load(open(p)); d["provenance"] = provenance() | {"command": "bench/tasks.sh"}
open(p, "w").write(json.dumps(d, indent=2) + "\n")' "$f"
done
