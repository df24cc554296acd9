#!/usr/bin/env bash
# Install everything awsio needs on a fresh Debian/Ubuntu machine (idempotent):
#   1. libcurl, zlib and libssl development files (for the native reader and its checksums), from
#      apt, if missing;
#   2. torch==2.13.0 (first, so that nothing later pulls a second, CUDA-sized torch);
#   3. awsio itself, editable, with the test and harness extras (this builds awsio._native).
# Environment: AWSIO_EXTRAS (default "test,harness"), PYTHON (default python3), TORCH_SPEC.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${AWSIO_EXTRAS:-test,harness}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
say() { echo "[install] $*"; }

have_native_headers() {
  local inc
  inc=$(curl-config --prefix 2>/dev/null)/include
  { [ -f "$inc/curl/curl.h" ] || [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ]; } \
    && [ -f /usr/include/zlib.h ] && [ -f /usr/include/openssl/evp.h ] && [ -f /usr/include/jpeglib.h ]
}
if ! have_native_headers; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    say "installing libcurl4-openssl-dev zlib1g-dev libssl-dev libjpeg-dev (native reader build dependencies)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libcurl4-openssl-dev zlib1g-dev libssl-dev libjpeg-dev >/dev/null
  else
    say "WARNING: no apt-get; without libcurl headers awsio falls back to its Python backend"
  fi
else
  say "libcurl, zlib, libssl and libjpeg headers present ($(curl-config --version))"
fi

want_torch=${TORCH_SPEC#torch==}
have_torch=$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [ "$have_torch" != "$want_torch" ]; then
  say "installing $TORCH_SPEC"
  "$PYTHON" -m pip install -q "$TORCH_SPEC"
else
  say "torch $have_torch present"
fi

say "installing awsio[$EXTRAS] (editable; builds the native reader)"
"$PYTHON" -m pip install -q -e ".[$EXTRAS]"
"$PYTHON" - <<'PY'
import torch, awsio
from awsio.s3.native_backend import native_available
print(f"[install] awsio {awsio.__version__}, torch {torch.__version__}, native reader: {'built' if native_available() else 'NOT built (Python backend)'}")
PY
