#!/usr/bin/env bash
# Loader benchmark on your own shards (the Hydra job, measured by awsio.bench.engine):
#   scripts/bench.sh [hydra overrides...]      e.g. 'urls="s3://b/train-{000000..000007}.tar"' --multirun num_workers=0,2
# The fixed workloads: python -m awsio.bench.reader | dataset | pipeline | train (README, "Benchmarks").
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m awsio.cli.bench "$@"
