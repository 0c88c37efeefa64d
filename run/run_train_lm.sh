#!/usr/bin/env bash
# The familiar shell entry point, a thin wrapper over `lmtrain train`:
#   ./run/run_train_lm.sh --preset small --warmup 4000 --lr 6e-4 [any other lmtrain train flag]
# Several GPUs (one process each, through torchrun; DDP unless --parallel fsdp):
#   ./run/run_train_lm.sh --gpus 8 --preset base ...                       one machine
#   ./run/run_train_lm.sh --gpus 8 --nodes 2 --rdzv-endpoint HOST:29500 ...  on every machine, the same command
# --batch-size stays the global batch: each of the gpus x nodes processes trains on its share.
# Uses $PYTHON, else the repository's .venv, else python3. Bad launcher flags exit 2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi

die() { echo "run_train_lm.sh: error: $1" >&2; exit 2; }
usage() {
  cat <<'EOF'
usage: run/run_train_lm.sh [--gpus N [--nodes M --rdzv-endpoint HOST:PORT]] [lmtrain train flags]

The familiar shell entry point of lmtrain train (through training/train_lm.py).
  --gpus N                   processes (GPUs) on this machine, launched with torchrun (DDP unless --parallel fsdp)
  --nodes M                  machines in the run (torchrun's c10d rendezvous); the same command runs on each
  --rdzv-endpoint HOST:PORT  a machine and port every node reaches (needed with --nodes)
$LMTRAIN_RDZV_ID names the rendezvous (default lmtrain); $PYTHON chooses the interpreter.

EOF
}
gpus=""; nodes=""; endpoint=""; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus|--nodes|--rdzv-endpoint)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in --gpus) gpus="$2" ;; --nodes) nodes="$2" ;; *) endpoint="$2" ;; esac
      shift 2 ;;
    --gpus=*) gpus="${1#*=}"; shift ;;
    --nodes=*) nodes="${1#*=}"; shift ;;
    --rdzv-endpoint=*) endpoint="${1#*=}"; shift ;;
    -h|--help) usage; exec "$python" "$root/training/train_lm.py" --help ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ -z "$gpus$nodes$endpoint" ]; then
  exec "$python" "$root/training/train_lm.py" "${args[@]+"${args[@]}"}"
fi
[[ "${gpus:-1}" =~ ^[1-9][0-9]*$ ]] || die "--gpus $gpus: give the number of processes (GPUs) per machine, e.g. --gpus 8"
[[ "${nodes:-1}" =~ ^[1-9][0-9]*$ ]] || die "--nodes $nodes: give the number of machines, e.g. --nodes 2"
launch=(-m torch.distributed.run --nproc_per_node "${gpus:-1}")
if [ "${nodes:-1}" = 1 ] && [ -z "$endpoint" ]; then
  launch+=(--standalone)
else
  [[ "$endpoint" =~ ^[^:]+:[0-9]+$ ]] || die "--nodes ${nodes:-1} needs --rdzv-endpoint HOST:PORT (a machine every node reaches)"
  launch+=(--nnodes "${nodes:-1}" --rdzv-backend c10d --rdzv-endpoint "$endpoint" --rdzv-id "${LMTRAIN_RDZV_ID:-lmtrain}")
fi
exec "$python" "${launch[@]}" "$root/training/train_lm.py" "${args[@]+"${args[@]}"}"
