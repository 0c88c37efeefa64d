#!/usr/bin/env bash
# Every GPU measurement in one call, one JSON out:
#   with --dist first: lmtrain train under torchrun (one process per GPU, DDP and FSDP2) on the built-in sample,
#   and bench train's scaling under torchrun (per-rank and total tokens/s, efficiency against one rank alone);
#   for each preset (tiny, small, base) and architecture (modern, gpt2): the micro-batch that maximises tokens/s
#   (bench train --best-batch: the largest that fits, then each power of two up to it, timed), then at that
#   micro-batch, eager and compiled, bf16: Muon (the default run) and AdamW against transformers (the same
#   compile), each with evaluation throughput beside training's; on base: the padded vocabulary lever
#   (--pad-vocab-to 64), a profile of the step (the top kernels), bench generate; with --sweep, the LR sweep
#   behind PRESET_LR (bench/lr_sweep.py: small and base, both architectures, Muon and AdamW).
# Usage: bench/gpu.sh [--smoke] [--out FILE] [--presets "tiny small base"] [--archs "modern gpt2"]
#                     [--modes "eager compiled"] [--parts DIR] [--dist] [--sweep [--sweep-data DIR]]
#   --smoke: the same script end to end on the CPU with the micro preset (narrowed to one layer of width 32 and, on
#            random tokens, a 500-id vocabulary), the modern block and 2 timed steps (the test suite runs it), 2 CPU
#            processes for --dist, the sweep's --smoke flow for --sweep.
#   --presets/--archs/--modes: a subset, to split the work over calls; --parts DIR keeps each measurement's JSON.
#   --sweep-data: the sweep's corpus (default ../shared/data/linux-docs; on a device machine, a copy carried inside
#            the working tree).
# Default FILE: bench/results/gpu-<device>.json. Uses `lmtrain` on PATH, else `python3 -m lmtrain` with src/ on
# PYTHONPATH (a machine with torch but without lmtrain installed); LMTRAIN=... overrides; torchrun runs as
# $PYTHON -m torch.distributed.run (default python3).
set -euo pipefail

smoke=0
out=""
presets_arg=""
modes_arg=""
parts=""
dist=""
archs_arg=""
sweep=""
sweep_data="../shared/data/linux-docs"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out="$2"; shift ;;
    --presets) presets_arg="$2"; shift ;;
    --modes) modes_arg="$2"; shift ;;
    --parts) parts="$2"; shift ;;
    --dist) dist=1 ;;
    --archs) archs_arg="$2"; shift ;;
    --sweep) sweep=1 ;;
    --sweep-data) sweep_data="$2"; shift ;;
    *) echo "bench/gpu.sh: unknown argument $1 (use --smoke, --out FILE, --presets, --modes, --archs, --parts DIR, --dist, --sweep, --sweep-data DIR)" >&2; exit 2 ;;
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
  device=cpu; dtype=fp32; presets="micro"; archs="modern"; steps=2; warmup=1; compiles="eager"; max_limit=4; gen_tokens=8
  base=micro; nproc=2; dist_model="--preset micro --d-model 32 --n-head 2 --n-layer 1 --max-seq-len 32"
  shrink="--d-model 32 --n-head 2 --n-layer 1 --vocab-size 500"  # random tokens: the flow, not the speed
  dist_run="--seq-len 32 --max-steps 4 --warmup 1"
else
  device=cuda; dtype=bf16; presets="tiny small base"; archs="modern gpt2"; steps=10; warmup=3; compiles="eager compiled"
  max_limit=256; shrink=""
  gen_tokens=256; base=base; nproc=$(${PYTHON:-python3} -c "import torch; print(max(1, torch.cuda.device_count()))")
  dist_model="--preset tiny"; dist_run="--seq-len 128 --max-steps 300 --warmup 30"
fi
presets=${presets_arg:-$presets}
compiles=${modes_arg:-$compiles}
archs=${archs_arg:-$archs}

batch_for() {  # micro-batch per preset: about 16k tokens per step at full context on a GPU
  case "$1" in tiny) echo 64 ;; small) echo 32 ;; base) echo 16 ;; *) echo 2 ;; esac
}

if [ -n "$dist" ]; then  # torchrun: a short training run per parallelism, then the step's scaling
  torchrun="${PYTHON:-python3} -m torch.distributed.run --standalone --nproc_per_node $nproc"
  runs=$(mktemp -d)
  train_modes="ddp fsdp"; scaling_modes="ddp fsdp"
  [ "$smoke" = 1 ] && { train_modes="ddp"; scaling_modes="fsdp"; }  # the smoke run checks the script, not both modes
  for par in $train_modes; do
    echo "== torchrun x$nproc lmtrain train --parallel $par" >&2
    code=0
    # shellcheck disable=SC2086
    $torchrun -m lmtrain train $dist_model $dist_run --dataset sample --cache-dir "$runs/cache" \
      --device "$device" --dtype "$dtype" --batch-size $((16 * nproc)) --parallel "$par" --eval-every 100 \
      --save-every 150 --eval-windows 64 --progress plain --out "$runs/$par" >"$runs/$par.log" 2>&1 || code=$?
    ${PYTHON:-python3} - "$runs/$par" "$code" "$par" "$parts/dist-train-$par.json" "$runs/$par.log" <<'PY'
import json, pathlib, sys
run, code, par, out, log = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
end = next((r for r in records if r["event"] == "end"), {})
evals = [r for r in records if r["event"] == "eval"]
config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
result = {
    "bench": "dist_train", "parallel": par, "exit_code": code, "distributed": config.get("distributed"),
    "steps": end.get("step"), "tokens_per_s": end.get("tokens_per_s"), "mfu": end.get("mfu"),
    "val_losses": [[r["step"], r["val_loss"]] for r in evals],
    "checkpoints": sorted(p.name for p in (run / "checkpoints").glob("step_*")) if (run / "checkpoints").exists() else [],
    "log_tail": pathlib.Path(log).read_text()[-1500:],
}
provenance = {"command": f"torchrun lmtrain train --parallel {par}"}
pathlib.Path(out).write_text(json.dumps(result | {"provenance": provenance}, indent=2) + "\n")
PY
  done
  for par in $scaling_modes; do
    echo "== torchrun x$nproc bench train --parallel $par" >&2
    # shellcheck disable=SC2086
    $torchrun -m lmtrain bench train --preset "$base" $shrink --device "$device" --dtype "$dtype" --parallel "$par" \
      --batch-size "$(( $(batch_for "$base") * nproc ))" --steps "$steps" --warmup-steps "$warmup" \
      --out "$parts/scaling-$base-$par.json" >/dev/null  # the global batch: one micro-batch per process
  done
  rm -rf "$runs"
fi

best_of() {  # the best micro-batch a best-batch JSON names
  ${PYTHON:-python3} -c 'import json, sys; print(json.load(open(sys.argv[1]))["best_batch"])' "$1"
}

for preset in $presets; do
  for arch in $archs; do
    # The micro-batch that maximises tokens/s (eager, Muon: the default run), then every timed run at it.
    echo "== bench train $preset --arch $arch --best-batch $max_limit" >&2
    $LMTRAIN bench train --preset "$preset" --arch "$arch" $shrink --device "$device" --dtype "$dtype" --optimizer muon \
      --best-batch "$max_limit" --steps "$steps" --warmup-steps "$warmup" \
      --out "$parts/best-batch-$preset-$arch.json" >/dev/null
    batch=$(best_of "$parts/best-batch-$preset-$arch.json")
    for mode in $compiles; do
      flag=""; [ "$mode" = compiled ] && flag="--compile"
      echo "== bench train $preset --arch $arch $mode, micro-batch $batch: muon, then adamw against transformers" >&2
      $LMTRAIN bench train --preset "$preset" --arch "$arch" $shrink --device "$device" --dtype "$dtype" \
        --batch-size "$batch" --optimizer muon --steps "$steps" --warmup-steps "$warmup" $flag \
        --out "$parts/train-$preset-$arch-muon-$mode.json" >/dev/null
      $LMTRAIN bench train --preset "$preset" --arch "$arch" $shrink --device "$device" --dtype "$dtype" \
        --batch-size "$batch" --optimizer adamw --against hf --steps "$steps" --warmup-steps "$warmup" $flag \
        --out "$parts/train-$preset-$arch-adamw-$mode.json" >/dev/null
    done
  done
done

case " $presets " in
*" $base "*)  # levers, the profile and generation belong to the call that measures $base
  lever_mode=$(echo "$compiles" | awk '{print $NF}')  # compiled when this call compiles, else eager
  flag=""; [ "$lever_mode" = compiled ] && flag="--compile"
  for arch in $archs; do
    batch=$(best_of "$parts/best-batch-$base-$arch.json")
    echo "== lever: $base --arch $arch --pad-vocab-to 64 ($lever_mode)" >&2
    $LMTRAIN bench train --preset "$base" --arch "$arch" $shrink --device "$device" --dtype "$dtype" \
      --batch-size "$batch" --optimizer adamw --pad-vocab-to 64 --steps "$steps" --warmup-steps "$warmup" $flag \
      --out "$parts/lever-pad64-$base-$arch-$lever_mode.json" >/dev/null
  done
  arch=$(echo "$archs" | awk '{print $1}')
  batch=$(best_of "$parts/best-batch-$base-$arch.json")
  echo "== bench train $base --profile" >&2
  $LMTRAIN bench train --preset "$base" --arch "$arch" $shrink --device "$device" --dtype "$dtype" \
    --batch-size "$batch" --optimizer muon --steps "$steps" --warmup-steps "$warmup" --profile --out "$parts/profile-$base.json" >/dev/null
  echo "== bench generate $base" >&2
  $LMTRAIN bench generate --preset "$base" --device "$device" --new-tokens "$gen_tokens" --out "$parts/generate-$base.json" >/dev/null
  ;;
esac

if [ -n "$sweep" ]; then  # the LR sweep behind PRESET_LR (--smoke: its whole flow in seconds on the sample)
  echo "== lr sweep" >&2
  sweep_flags="--presets small base --data-dir $sweep_data"; [ "$smoke" = 1 ] && sweep_flags="--smoke"
  # shellcheck disable=SC2086
  ${PYTHON:-python3} "$(dirname "$0")/lr_sweep.py" $sweep_flags --out "$parts/lr-sweep.json" >/dev/null
fi

python3 - "$parts" "$out" "$smoke" <<'PY'
import json, pathlib, re, sys
parts, out, smoke = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
results = {p.stem: json.loads(p.read_text()) for p in sorted(parts.glob("*.json"))}
first = next(iter(results.values()))
device = next((r["device_name"] for r in results.values() if "device_name" in r), first.get("device", "unknown"))
provenance = next((r["provenance"] for r in results.values() if "commit" in r.get("provenance", {})), first["provenance"])
merged = {"bench": "gpu.sh", "smoke": smoke, "device_name": device, "provenance": provenance, "results": results}
if not out:
    name = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
    out = f"bench/results/gpu-{name}.json"
path = pathlib.Path(out)
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(merged, indent=2) + "\n")
print(path)
PY
