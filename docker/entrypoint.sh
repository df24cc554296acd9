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
# Results: /app/runs and /app/bench_results link into /app/results; the jobs that write there first
# create both folders, so an empty bind mount (or a Kubernetes emptyDir) at /app/results works like
# compose's named volume, which the image fills.
set -euo pipefail
APP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # /app in the image
cd "$APP"

results_dirs() {
    if ! mkdir -p results/runs results/bench_results 2>/dev/null; then
        echo "entrypoint: cannot create runs/ and bench_results/ in $APP/results: mount a folder" \
             "writable by uid $(id -u) there" >&2
        exit 1
    fi
}

job=${1:-help}
[[ $# -gt 0 ]] && shift

case "$job" in
    train)
        results_dirs
        exec "$APP/scripts/train.sh" "${AWSIO_NPROC:-2}" "$@"
        ;;
    bench)
        results_dirs
        exec "$APP/scripts/bench.sh" "$@"
        ;;
    pytest)
        exec "$APP/scripts/test.sh" "$@"
        ;;
    makeshards)
        exec python -m awsio.tools.makeshards "$@"
        ;;
    init)
        exec "$APP/docker/init.sh" "$@"
        ;;
    demo)
        results_dirs
        exec "$APP/scripts/demo.sh" "$@"
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
