#!/usr/bin/env bash
# The full test suite: installs what it needs (scripts/install.sh; skip with AWSIO_SKIP_INSTALL=1),
# then runs pytest (unit + integration against a local SeaweedFS S3 server + native parity).
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k tar -x
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ "${AWSIO_SKIP_INSTALL:-0}" != 1 ]; then
  bash scripts/install.sh
fi
set +e
"$PYTHON" -m pytest -q -ra --durations=15 "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
