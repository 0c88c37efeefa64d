#!/usr/bin/env bash
# The familiar shell entry point, a thin wrapper over `lmtrain train`:
#   ./run/run_train_lm.sh --preset small --warmup 4000 --lr 6e-4 [any other lmtrain train flag]
# Uses $PYTHON, else the repository's .venv, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
exec "$python" "$root/training/train_lm.py" "$@"
