#!/usr/bin/env bash
# awsio image entry point: the first argument names the job, the rest pass through unchanged
# (Hydra overrides for train/bench, pytest arguments for pytest).
#
#   train [overrides...]       torchrun --standalone --nproc_per_node=$AWSIO_NPROC -m awsio.cli.train
#   bench [overrides...]       python -m awsio.cli.bench
#   pytest [args...]           python -m pytest (the test image has tests/ and the test extras)
#   makeshards [args...]       python -m awsio.tools.makeshards
#   init                       create the buckets and upload the demo shards (docker/init.sh)
#   demo                       scripts/demo.sh against the configured endpoint
#   shell [args...]            bash
#   help                       this text
# Anything else runs as a command (e.g. `python -m awsio.bench.reader`).
set -euo pipefail
cd /app

job=${1:-help}
[[ $# -gt 0 ]] && shift

case "$job" in
    train)
        exec torchrun --standalone --nproc_per_node="${AWSIO_NPROC:-2}" -m awsio.cli.train "$@"
        ;;
    bench)
        exec python -m awsio.cli.bench "$@"
        ;;
    pytest)
        exec python -m pytest "$@"
        ;;
    makeshards)
        exec python -m awsio.tools.makeshards "$@"
        ;;
    init)
        exec /app/docker/init.sh "$@"
        ;;
    demo)
        exec /app/scripts/demo.sh "$@"
        ;;
    shell)
        exec bash "$@"
        ;;
    help|-h|--help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        exec "$job" "$@"
        ;;
esac
