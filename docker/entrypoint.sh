#!/usr/bin/env bash
# awsio image entry point: the first argument names the job, the rest pass through unchanged
# (Hydra overrides for train/bench, pytest arguments for pytest).
#
#   train [overrides...]       scripts/train.sh $AWSIO_NPROC: torchrun --standalone -m awsio.cli.train
#   bench [overrides...]       scripts/bench.sh: python -m awsio.cli.bench
#   pytest [args...]           scripts/test.sh: CI's test command (python -m pytest; test image only)
#   makeshards [args...]       python -m awsio.tools.makeshards
#   init                       create the buckets and upload the demo shards (docker/init.sh)
#   demo                       scripts/demo.sh against the configured endpoint
#   shell [args...]            bash
#   help                       this text
# Anything else runs as a command (e.g. `python -m awsio.bench.reader`). The jobs go through the
# same scripts/ launchers used outside the container (AWSIO_SKIP_INSTALL=1: the image is installed).
set -euo pipefail
cd /app

job=${1:-help}
[[ $# -gt 0 ]] && shift

case "$job" in
    train)
        exec /app/scripts/train.sh "${AWSIO_NPROC:-2}" "$@"
        ;;
    bench)
        exec /app/scripts/bench.sh "$@"
        ;;
    pytest)
        exec /app/scripts/test.sh "$@"
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
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        ;;
    *)
        exec "$job" "$@"
        ;;
esac
