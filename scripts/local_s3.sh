#!/usr/bin/env bash
# Start, stop or describe the local S3 server (SeaweedFS on 127.0.0.1) used by the demo and tests.
#   ./scripts/local_s3.sh start [--dir D] [--port P] [--bucket B]
#   eval "$(./scripts/local_s3.sh env)"
#   ./scripts/local_s3.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m awsio.testing.local_s3 "$@"
