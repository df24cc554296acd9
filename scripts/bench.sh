#!/usr/bin/env bash
# Thin wrapper: scripts/bench.sh [hydra overrides...]   (e.g. --multirun num_workers=0,2)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m awsio.cli.bench "$@"
