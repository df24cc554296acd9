#!/usr/bin/env bash
# awsio demo: synthetic image shards in S3 -> 2-process DDP training on CPU -> loader benchmark chart.
#
#   ./scripts/demo.sh
#
# On a fresh machine it installs what is missing (scripts/install.sh with the test, harness and peers
# extras; skip with AWSIO_SKIP_INSTALL=1), starts a local SeaweedFS S3 server (python -m
# awsio.testing.local_s3) unless an endpoint or AWS credentials are configured, writes a synthetic
# shard set to a bucket, trains for a few epochs with `torchrun --standalone --nproc_per_node=2 -m
# awsio.cli.train`, prints accuracy and data-loading throughput per epoch, then runs the benchmark
# engine on 4 x 64 MiB tar shards (python -m awsio.bench.dataset: awsio and every peer that is
# installed, 3 rounds in alternating order) and writes its chart (PNG, medians with their range, the
# conditions printed on it). About 4 minutes on 2 idle cores once installed.
#
# Knobs (environment):
#   AWSIO_DEMO_BUCKET  bucket to write to (default awsio-demo; created on the local server only)
#   AWSIO_DEMO_PREFIX  key prefix (default synthetic)       AWSIO_DEMO_SAMPLES  images (default 4000)
#   AWSIO_DEMO_EPOCHS  training epochs (default 4)          AWSIO_DEMO_NPROC    processes (default 2)
#   AWSIO_DEMO_OUT     run folder (default runs/demo)       AWSIO_DEMO_BENCH=0  skip the benchmark
#   AWSIO_DEMO_BENCH_SHARDS  64 MiB shards benchmarked (default 4)   AWSIO_DEMO_ROUNDS  (default 3)
#   AWSIO_SKIP_INSTALL=1  do not run scripts/install.sh     AWSIO_BACKEND  auto | native | python
#
# Against Amazon S3 (credentials from the usual chain; the bucket must exist and be writable):
#   AWS_PROFILE=me AWS_REGION=us-west-2 AWSIO_DEMO_BUCKET=my-bucket ./scripts/demo.sh
# Against MinIO or another S3-compatible server:
#   AWS_ENDPOINT_URL=http://minio:9000 AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin \
#     AWSIO_DEMO_BUCKET=demo ./scripts/demo.sh
# (any configured endpoint or AWS credentials disable the local server; the same training command
# then runs there, e.g. with `s3=aws` or `s3=minio` profiles when you run it by hand.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
BUCKET=${AWSIO_DEMO_BUCKET:-awsio-demo}
PREFIX=${AWSIO_DEMO_PREFIX:-synthetic}
SAMPLES=${AWSIO_DEMO_SAMPLES:-4000}
EPOCHS=${AWSIO_DEMO_EPOCHS:-4}
NPROC=${AWSIO_DEMO_NPROC:-2}
OUT=${AWSIO_DEMO_OUT:-runs/demo}
PER_SHARD=$(( (SAMPLES + 7) / 8 ))
S3_DIR="$ROOT/.local_s3/demo"
T0=$(date +%s)

say() { printf '\n== %s\n' "$*"; }

if [[ ${AWSIO_SKIP_INSTALL:-0} != 1 ]]; then
    say "installing what is missing (scripts/install.sh; AWSIO_SKIP_INSTALL=1 skips)"
    AWSIO_EXTRAS=${AWSIO_EXTRAS:-test,harness,peers} ./scripts/install.sh
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

STARTED=0
cleanup() {
    if [[ $STARTED == 1 ]]; then
        say "stopping the local S3 server"
        "$PY" -m awsio.testing.local_s3 stop --dir "$S3_DIR" || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${AWS_ENDPOINT_URL:-}${AWS_ENDPOINT_URL_S3:-}${S3_ENDPOINT_URL:-} && -z ${AWS_ACCESS_KEY_ID:-} && -z ${AWS_PROFILE:-} ]]; then
    say "starting a local SeaweedFS S3 server in $S3_DIR"
    mkdir -p "$S3_DIR"
    "$PY" -m awsio.testing.local_s3 start --dir "$S3_DIR"
    STARTED=1
    S3_ENV=$("$PY" -m awsio.testing.local_s3 env --dir "$S3_DIR")  # (eval "$(...)" would lose its exit status)
    eval "$S3_ENV"
    export AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
else
    say "using the configured S3 endpoint/credentials (no local server)"
fi

# The bucket: created if missing on a custom endpoint (local server, MinIO...); on AWS it must exist.
"$PY" - "$BUCKET" <<'PYEOF'
import sys
import boto3, botocore.config, botocore.exceptions
from awsio.config import S3Config
c = S3Config()
s3 = boto3.client("s3", endpoint_url=c.endpoint_url, region_name=c.region,
                  config=botocore.config.Config(s3={"addressing_style": "path" if c.path_style else "auto"}))
bucket = sys.argv[1]
try:
    s3.head_bucket(Bucket=bucket)
except botocore.exceptions.ClientError as e:
    if c.endpoint_url is None:
        sys.exit(f"demo: bucket {bucket} is not reachable on AWS ({e.response['Error'].get('Code')}); "
                 "set AWSIO_DEMO_BUCKET to a bucket you can write")
    s3.create_bucket(Bucket=bucket)
    print(f"demo: created bucket {bucket}")
PYEOF

URLS="s3://$BUCKET/$PREFIX/train-{000000..000007}.tar"
say "writing $SAMPLES synthetic labelled JPEGs as 8 tar shards to s3://$BUCKET/$PREFIX/"
"$PY" -m awsio.tools.makeshards --synthetic "$SAMPLES" --classes 10 --image-size 32 --maxcount "$PER_SHARD" \
    --output "s3://$BUCKET/$PREFIX/" --prefix train --seed 0 --overwrite

say "training: torchrun --standalone --nproc_per_node=$NPROC -m awsio.cli.train ($EPOCHS epochs, CPU)"
rm -rf "$OUT/train"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m awsio.cli.train \
    "data.urls=\"$URLS\"" trainer.epochs="$EPOCHS" trainer.run_dir="$OUT/train" data.num_workers=1 \
    trainer.checkpoint="s3://$BUCKET/$PREFIX/checkpoints/demo.pt"

say "per-epoch metrics ($OUT/train/metrics.jsonl)"
"$PY" - "$OUT/train/metrics.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'epoch':>5} {'loss':>8} {'accuracy':>9} {'samples/s':>10} {'data wait':>10}")
for r in rows:
    print(f"{r['epoch']:>5} {r['loss']:>8.4f} {r['accuracy']:>9.3f} {r['samples_per_s']:>10.0f} {100*r['data_wait_fraction']:>9.0f}%")
if len(rows) > 1:
    trend = "rose" if rows[-1]["accuracy"] > rows[0]["accuracy"] else "did NOT rise"
    print(f"accuracy {trend}: {rows[0]['accuracy']:.3f} -> {rows[-1]['accuracy']:.3f}")
PYEOF

if [[ ${AWSIO_DEMO_BENCH:-1} != 0 ]]; then
    say "loader benchmark: python -m awsio.bench.dataset (tar shards, every installed peer, ${AWSIO_DEMO_ROUNDS:-3} rounds)"
    rm -rf "$OUT/bench"
    "$PY" -m awsio.bench.dataset --bucket "$BUCKET" --shards "${AWSIO_DEMO_BENCH_SHARDS:-4}" --shard-mib 64 \
        --member-kib 100 --workers 0 --rounds "${AWSIO_DEMO_ROUNDS:-3}" --out "$OUT/bench" --quiet \
        --loaders awsio,boto3,s3torchconnector,webdataset,litdata,mosaic
    say "benchmark table: $OUT/bench/dataset-tar_shards.csv   chart: $OUT/bench/dataset-tar_shards.png"
fi
say "demo finished in $(( $(date +%s) - T0 )) s"
