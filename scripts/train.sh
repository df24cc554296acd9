#!/usr/bin/env bash
# Thin wrapper: scripts/train.sh [NPROC] [hydra overrides...]
#   scripts/train.sh 2 'data.urls="s3://bucket/train-{000000..000007}.tar"' trainer.epochs=3
# Multi-node: run torchrun yourself with --nnodes/--node_rank/--rdzv_* (see awsio/cli/train.py).
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=1
if [[ ${1:-} =~ ^[0-9]+$ ]]; then NPROC=$1; shift; fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
if [[ $NPROC == 1 ]]; then
    exec "$PY" -m awsio.cli.train "$@"       # one process: no launcher needed
fi
# (a config error is reported by each rank in one line; torchrun then adds its own traceback)
exec "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m awsio.cli.train "$@"
