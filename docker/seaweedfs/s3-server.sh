#!/bin/sh
# Start `weed mini` as an S3 server on :9000 with data in /data and one identity, taken from the
# variables compose's minio service sets (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD). Extra arguments go
# to `weed mini`. Every other SeaweedFS port stays inside the container.
set -eu
: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER (the S3 access key)}"
: "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD (the S3 secret key)}"
umask 077
python - /etc/seaweedfs/s3.json <<'PY'
import json, os, sys
identity = {"name": "awsio", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": os.environ["MINIO_ROOT_USER"],
                             "secretKey": os.environ["MINIO_ROOT_PASSWORD"]}]}
with open(sys.argv[1], "w") as f:
    json.dump({"identities": [identity]}, f)
PY
exec weed mini -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 -s3.port=9000 -s3.config=/etc/seaweedfs/s3.json \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -master.telemetry=false \
    -master.volumeSizeLimitMB=1024 "$@"
