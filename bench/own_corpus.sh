#!/usr/bin/env bash
# An own corpus end to end, GPT-2 BPE against a BPE trained on the corpus: train the tokenizer, then with each
# tokenizer prepare, doctor, train the same model for the same steps of the same windows, eval the test split,
# generate and write the report; record tokens per byte, bits per byte and word perplexity in one JSON.
# Usage: bench/own_corpus.sh CORPUS_DIR [--vocab-size 16384] [--steps 150] [--out FILE] [--smoke]
set -euo pipefail
corpus="$1"; shift
vocab=16384; steps=150; preset=tiny; batch=8; seq=256; warmup=10
out="bench/results/own-corpus-linux-docs-cpu-$(nproc)core.json"
while [ $# -gt 0 ]; do
  case "$1" in
    --vocab-size) vocab="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --smoke) vocab=1024; steps=4; preset=micro; batch=2; seq=64; warmup=1; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
lm=.venv/bin/lmtrain
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache=(--cache-dir "$work/cache")
t0=$(date +%s)
$lm tokenizer train "$corpus" --vocab-size "$vocab" --out "$work/tok" --json > "$work/tokenizer.json"
echo "tokenizer trained in $(( $(date +%s) - t0 )) s"
for tok in gpt2 "$work/tok"; do
  name=$([ "$tok" = gpt2 ] && echo gpt2 || echo "bpe$vocab")
  run="$work/run-$name"
  common=(--dataset text --data-dir "$corpus" --tokenizer "$tok" "${cache[@]}")
  $lm prepare "${common[@]}" --json > "$work/prepare-$name.json"
  $lm doctor "${common[@]}" --preset "$preset" --max-steps "$steps" --batch-size "$batch" --seq-len "$seq" \
    --device cpu --json > "$work/doctor-$name.json" || true  # exit 1 when it finds an ERROR: recorded, not fatal
  s=$(date +%s)
  $lm train "${common[@]}" --preset "$preset" --max-steps "$steps" --batch-size "$batch" --seq-len "$seq" \
    --device cpu --warmup "$warmup" --eval-every 50 --eval-windows 100 --log-every 25 --out "$run" > "$work/train-$name.log"
  echo "$name: trained in $(( $(date +%s) - s )) s"
  echo $(( $(date +%s) - s )) > "$work/train-seconds-$name"
  $lm eval "$run" --split test --device cpu "${cache[@]}" --json > "$work/eval-$name.json"
  $lm generate "$run" --prompt "The kernel" --max-new-tokens 40 --seed 1 --device cpu --json > "$work/generate-$name.json"
  $lm report "$run" > /dev/null
  test -f "$run/report.html"
done
.venv/bin/python - "$work" "$out" "$vocab" "$steps" "$preset" "$batch" "$seq" "$corpus" <<'PY'
import json, pathlib, sys
from lmtrain.bench import provenance
work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
vocab, steps, preset, batch, seq = sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
rows = {}
for name in ("gpt2", f"bpe{vocab}"):
    prep = json.loads((work / f"prepare-{name}.json").read_text())
    ev = json.loads((work / f"eval-{name}.json").read_text())
    doctor = json.loads((work / f"doctor-{name}.json").read_text())
    sample = json.loads((work / f"generate-{name}.json").read_text())[0]
    rows[name] = {
        "vocab_size": json.loads((work / f"run-{name}" / "config.json").read_text())["model"]["vocab_size"],
        "train_tokens": prep["train"]["tokens"],
        "tokens_per_byte": {s: round(prep[s]["tokens"] / prep[s]["bytes"], 4) for s in prep},
        "test_bits_per_byte": round(ev["bits_per_byte"], 4),
        "test_word_ppl": round(ev["word_ppl"], 2),
        "test_token_ppl": round(ev["token_ppl"], 2),
        "train_bytes_seen": round(steps * batch * seq / prep["train"]["tokens"] * prep["train"]["bytes"]),
        "train_seconds": int((work / f"train-seconds-{name}").read_text()),
        "prepare_seconds": prep["train"]["seconds"],
        "doctor": [f["code"] for f in doctor.get("findings", []) if f["level"] != "OK"],
        "sample": sample["completion"],
    }
result = {
    "bench": "own-corpus",
    "corpus": sys.argv[8],
    "budget": {"preset": preset, "steps": steps, "batch_size": batch, "seq_len": seq, "tokens": steps * batch * seq},
    "tokenizer_training": json.loads((work / "tokenizer.json").read_text()),
    "runs": rows,
    "provenance": {**provenance(), "command": "bench/own_corpus.sh " + " ".join(sys.argv[3:])},
}
result["tokenizer_training"].pop("out", None)
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
PY
