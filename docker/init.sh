#!/usr/bin/env bash
# One-shot setup of the compose stack's S3 server: create the buckets, then write the demo's
# synthetic shard set with awsio's own shard maker (multipart upload, per-shard index files).
# Skips the upload when the last shard is already there (the MinIO volume persists), unless
# AWSIO_INIT_FORCE=1.
#
# Environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (the server);
#   AWSIO_BUCKETS      buckets to create, space separated (default: awsio-demo)
#   AWSIO_DEMO_BUCKET  bucket of the shard set (default: awsio-demo)
#   AWSIO_DEMO_PREFIX  key prefix (default: synthetic)
#   AWSIO_DEMO_SAMPLES images, written as 8 shards train-000000..000007.tar (default: 4000),
#                      the URLs conf/data/synthetic.yaml and conf/bench.yaml read by default.
set -euo pipefail

BUCKET=${AWSIO_DEMO_BUCKET:-awsio-demo}
PREFIX=${AWSIO_DEMO_PREFIX:-synthetic}
SAMPLES=${AWSIO_DEMO_SAMPLES:-4000}
BUCKETS=${AWSIO_BUCKETS:-$BUCKET}
SHARDS=8
if ! [[ $SAMPLES =~ ^[0-9]+$ ]] || (( SAMPLES < SHARDS || SAMPLES % SHARDS )); then
    echo "init: AWSIO_DEMO_SAMPLES=$SAMPLES must be a multiple of $SHARDS (the jobs read $SHARDS shards)" >&2
    exit 2
fi
PER_SHARD=$(( (SAMPLES + SHARDS - 1) / SHARDS ))
LAST_KEY=$(printf '%s/train-%06d.tar' "$PREFIX" $(( SHARDS - 1 )))

: "${AWS_ENDPOINT_URL:?set AWS_ENDPOINT_URL to the S3 server (e.g. http://minio:9000)}"

echo "init: buckets [$BUCKETS] on $AWS_ENDPOINT_URL"
# Prints "present" when the shard set's last shard exists (credentials stay in the environment).
state=$(python - "$LAST_KEY" $BUCKETS <<'PYEOF'
import os
import sys

import botocore.config
import botocore.session
from botocore.exceptions import ClientError

last_key, buckets = sys.argv[1], sys.argv[2:]
s3 = botocore.session.get_session().create_client(
    "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    config=botocore.config.Config(s3={"addressing_style": "path"}))
for bucket in buckets:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)
        print(f"init: created bucket {bucket}", file=sys.stderr)
demo_bucket = os.environ.get("AWSIO_DEMO_BUCKET", "awsio-demo")
try:
    s3.head_object(Bucket=demo_bucket, Key=last_key)
    print("present")
except ClientError:
    print("absent")
PYEOF
)

if [[ $state == present && ${AWSIO_INIT_FORCE:-0} != 1 ]]; then
    echo "init: s3://$BUCKET/$LAST_KEY exists; keeping the shard set (AWSIO_INIT_FORCE=1 rewrites it)"
    exit 0
fi

echo "init: writing $SAMPLES synthetic images as $SHARDS shards to s3://$BUCKET/$PREFIX/"
python -m awsio.tools.makeshards --synthetic "$SAMPLES" --classes 10 --image-size 32 \
    --maxcount "$PER_SHARD" --output "s3://$BUCKET/$PREFIX/" --prefix train --seed 0 --quiet --overwrite
echo "init: done"
