#!/usr/bin/env bash
# GPU check: the training job on one GPU and the image-pipeline benchmark with batches moved to the
# device, over a local S3 server; prints samples/s and the fraction of time spent waiting for data.
#
#   ./scripts/gpu_check.sh
#   docker compose -f compose.yaml -f docker/compose.gpu.yaml run --rm --entrypoint /app/scripts/gpu_check.sh train
#
# 1. python -m awsio.bench.train --nproc 1 --device cuda: torchrun with one rank on cuda:0, which
#    makes awsio.cli.train use nccl, AMP (bfloat16 autocast), pinned-memory DataLoader batches and
#    non-blocking host-to-device copies; samples/s and data-wait % per epoch, medians over rounds.
# 2. python -m awsio.bench.pipeline --device cuda: the decode -> resize -> to-tensor pipeline (awsio
#    and its in-memory ceiling) with every batch copied to the GPU (pinned, non_blocking).
#
# Each program starts its own SeaweedFS on 127.0.0.1 unless AWS_ENDPOINT_URL names a server.
# Without a CUDA device it prints one line saying so and exits with status 3.
# Knobs: GPU_CHECK_ROUNDS (default 2), GPU_CHECK_WORKERS (DataLoader workers, default 4),
# GPU_CHECK_OUT (default runs/gpu_check), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ROUNDS=${GPU_CHECK_ROUNDS:-2}
WORKERS=${GPU_CHECK_WORKERS:-4}
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
if [[ -d awsio ]]; then export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"; fi

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() and torch.cuda.device_count() > 0 else 1)' \
        >/dev/null 2>&1; then
    echo "gpu_check: no CUDA device available to torch (torch.cuda.is_available() is False); nothing was run" >&2
    exit 3
fi
if ! "$PY" -c 'import awsio.bench.engine' >/dev/null 2>&1; then
    echo "gpu_check: the benchmark code (awsio/bench) is not installed here; run from a source checkout" \
         "or an image built with AWSIO_WHEEL_WITH_BENCH=1" >&2
    exit 4
fi
"$PY" -c 'import torch; print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")'

echo "== training: torchrun x1 on cuda (nccl, AMP, pinned memory, non-blocking copies)"
"$PY" -m awsio.bench.train --nproc 1 --device cuda --workers "$WORKERS" --epochs 3 --batch-size 256 \
    --image-size 64 --rounds "$ROUNDS" --out "$OUT" --quiet

echo "== image pipeline, batches moved to cuda"
"$PY" -m awsio.bench.pipeline --device cuda --loaders memory,awsio --workers "0,$WORKERS" --rounds "$ROUNDS" \
    --out "$OUT" --quiet
echo "gpu_check: tables and charts in $OUT"
