#!/usr/bin/env bash
# Every GPU measurement in one call, one JSON out:
#   bench train for tiny, small and base at their full context, bf16, eager and compiled, each against transformers;
#   the largest micro-batch of base at context 1024 that fits, with its peak memory; bench generate; a profile of
#   base's step (the top kernels).
# Usage: bench/gpu.sh [--smoke] [--out FILE] [--presets "tiny small base"] [--modes "eager compiled"] [--parts DIR]
#   --smoke: the same script end to end on the CPU with the micro preset and 2 timed steps (the test suite runs it).
#   --presets/--modes: a subset, to split the work over calls; --parts DIR keeps each measurement's JSON there.
# Default FILE: bench/results/gpu-<device>.json. Uses `lmtrain` on PATH, else `python3 -m lmtrain` with src/ on
# PYTHONPATH (a machine with torch but without lmtrain installed); LMTRAIN=... overrides.
set -euo pipefail

smoke=0
out=""
presets_arg=""
modes_arg=""
parts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out="$2"; shift ;;
    --presets) presets_arg="$2"; shift ;;
    --modes) modes_arg="$2"; shift ;;
    --parts) parts="$2"; shift ;;
    *) echo "bench/gpu.sh: unknown argument $1 (use --smoke, --out FILE, --presets, --modes, --parts DIR)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "${LMTRAIN:-}" ]; then
  if command -v lmtrain >/dev/null; then LMTRAIN=lmtrain
  else LMTRAIN="python3 -m lmtrain"; export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
if [ -z "$parts" ]; then
  parts=$(mktemp -d)
  trap 'rm -rf "$parts"' EXIT
fi
mkdir -p "$parts"

if [ "$smoke" = 1 ]; then
  device=cpu; dtype=fp32; presets="micro"; steps=2; warmup=1; compiles="eager"; max_limit=4; gen_tokens=8
  base=micro
else
  device=cuda; dtype=bf16; presets="tiny small base"; steps=10; warmup=3; compiles="eager compiled"; max_limit=256
  gen_tokens=256; base=base
fi
presets=${presets_arg:-$presets}
compiles=${modes_arg:-$compiles}

batch_for() {  # micro-batch per preset: about 16k tokens per step at full context on a GPU
  case "$1" in tiny) echo 64 ;; small) echo 32 ;; base) echo 16 ;; *) echo 2 ;; esac
}

for preset in $presets; do
  for mode in $compiles; do
    flag=""; [ "$mode" = compiled ] && flag="--compile"
    echo "== bench train $preset $mode" >&2
    $LMTRAIN bench train --preset "$preset" --device "$device" --dtype "$dtype" --batch-size "$(batch_for "$preset")" \
      --steps "$steps" --warmup-steps "$warmup" --against hf $flag --out "$parts/train-$preset-$mode.json" >/dev/null
  done
done
case " $presets " in
  *" $base "*)  # the profile, the largest batch and generation belong to the call that measures $base
    echo "== bench train $base --profile" >&2
    $LMTRAIN bench train --preset "$base" --device "$device" --dtype "$dtype" --batch-size "$(batch_for "$base")" \
      --steps "$steps" --warmup-steps "$warmup" --profile --out "$parts/profile-$base.json" >/dev/null
    echo "== largest micro-batch of $base" >&2
    $LMTRAIN bench train --preset "$base" --device "$device" --dtype "$dtype" --max-batch "$max_limit" \
      --out "$parts/max-batch-$base.json" >/dev/null
    echo "== bench generate $base" >&2
    $LMTRAIN bench generate --preset "$base" --device "$device" --new-tokens "$gen_tokens" --out "$parts/generate-$base.json" >/dev/null
    ;;
esac

python3 - "$parts" "$out" "$smoke" <<'PY'
import json, pathlib, re, sys
parts, out, smoke = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
results = {p.stem: json.loads(p.read_text()) for p in sorted(parts.glob("*.json"))}
first = next(iter(results.values()))
device = next((r["device_name"] for r in results.values() if "device_name" in r), first.get("device", "unknown"))
merged = {"bench": "gpu.sh", "smoke": smoke, "device_name": device, "provenance": first["provenance"], "results": results}
if not out:
    name = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
    out = f"bench/results/gpu-{name}.json"
path = pathlib.Path(out)
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(merged, indent=2) + "\n")
print(path)
PY
