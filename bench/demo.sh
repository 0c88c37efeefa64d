#!/usr/bin/env bash
# Time `make demo` (train, eval, generate, report; after set-up) and record the wall time of each part and the final
# validation loss in bench/results/demo-<machine>.json (default name: demo-cpu-<cores>core.json).
# Usage: bench/demo.sh [--out FILE]
set -euo pipefail
out="bench/results/demo-cpu-$(nproc)core.json"
[ "${1:-}" = "--out" ] && out="$2"
make setup >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Stamp every output line with the seconds since the start, so each part's time can be read off.
make demo 2>&1 | python3 -u -c '
import sys, time
t0 = time.time()
for line in sys.stdin:
    print(f"{time.time() - t0:.2f} {line}", end="", flush=True)
print(f"{time.time() - t0:.2f} (end)", flush=True)' | tee "$log"
.venv/bin/python - "$log" "$out" <<'PY'
import json, pathlib, re, sys
from lmtrain.bench import provenance
lines = pathlib.Path(sys.argv[1]).read_text().splitlines()
stamps = [(float(l.split(" ", 1)[0]), l.split(" ", 1)[1] if " " in l else "") for l in lines]
def at(prefix):
    return next(t for t, text in stamps if text.startswith(prefix))
parts = {"train": at(".venv/bin/lmtrain train"), "eval": at(".venv/bin/lmtrain eval"),
         "generate": at(".venv/bin/lmtrain generate"), "report": at(".venv/bin/lmtrain report")}
total = stamps[-1][0]
marks = list(parts.values()) + [total]
seconds = {name: round(marks[i + 1] - marks[i], 1) for i, name in enumerate(parts)}
metrics = [json.loads(l) for l in pathlib.Path("runs/demo/metrics.jsonl").read_text().splitlines()]
evals = [r for r in metrics if r["event"] == "eval"]
end = next(r for r in metrics if r["event"] == "end")
test = re.search(r"token ppl\s+([\d,.]+)", "\n".join(t for _, t in stamps))
result = {
    "bench": "demo", "total_seconds": round(total, 1), "seconds": seconds,
    "val_losses": {r["step"]: r["val_loss"] for r in evals}, "final_val_loss": evals[-1]["val_loss"],
    "train_tokens_per_s": end["tokens_per_s"], "train_mfu": end.get("mfu"),
    "test_token_ppl": float(test.group(1).replace(",", "")) if test else None,
    "provenance": provenance() | {"command": "bench/demo.sh (make demo)"},
}
path = pathlib.Path(sys.argv[2]); path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps({k: result[k] for k in ("total_seconds", "seconds", "final_val_loss")}))
PY
