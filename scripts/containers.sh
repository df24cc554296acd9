#!/usr/bin/env bash
# Build the awsio images and run the compose stack for real (CI runs this after the test suite):
#   1. an engine: docker with buildx and compose, else podman + podman-compose (podman, buildah and
#      runc from apt, podman-compose from PyPI, when neither engine is there);
#   2. the base image and torch: pulled (online, what users do), or made here (offline: a Debian
#      bookworm Python image by debootstrap, torch from the local wheel directory that pip finds,
#      served as a PEP 503 index on 127.0.0.1); Python packages come from PyPI in both modes;
#   3. the test target, then the bench and runtime targets (cache hits on the test target's layers);
#   4. compose.yaml's stack, with MinIO, or with SeaweedFS (docker/compose.seaweedfs.yaml) where the
#      MinIO image cannot be pulled: S3 server healthy, init (buckets, demo shards), the integration
#      suite in the tests service, the train job, alternating with the same train on this host
#      against the same server (a samples/s ratio; when awsio is installed here), a short bench,
#      train's and bench's results in the results volume, and a short train with an empty folder
#      bind-mounted at /app/results;
#   5. the stack down, volumes included, whatever happened (trap).
#
#   scripts/containers.sh [--online | --offline] [--engine docker|podman] [--s3 minio|seaweedfs]
#                         [--no-install] [--epochs N] [--rounds N] [--rebuild-base]
#
# Without --online/--offline the mode is online when the base image pulls and the PyTorch index
# answers, else offline. --epochs: of each train run (default 1); --rounds: train runs inside and
# outside the container, taking turns (default 1); the ratio is the median of the rounds' ratios.
# The last line says "containers: OK ..." or "containers: FAILED: <why>" (exit status 1); each
# step's output is in $AWSIO_CONTAINERS_DIR/logs/STEP.log.
# Environment: AWSIO_CONTAINERS_DIR (logs, torch index, podman-compose; /var/tmp/awsio-containers),
#   AWSIO_NICE (niceness of builds and jobs, 19), AWSIO_S3_TIMEOUT (seconds for the S3 server to
#   become healthy, 120), AWSIO_TORCH_INDEX_PORT (offline torch index on 127.0.0.1, 8765),
#   CONTAINERS_CONF (podman settings; default docker/containers.conf), PYTHON (the host Python:
#   podman-compose's venv, the outside-the-container train; python3), MINIO_ROOT_USER/PASSWORD.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=auto ENGINE= S3=auto INSTALL=1 EPOCHS=1 ROUNDS=1 REBUILD_BASE=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --online) MODE=online ;;
        --offline) MODE=offline ;;
        --engine) ENGINE=${2:-none}; shift ;;
        --s3) S3=${2:-none}; shift ;;
        --no-install) INSTALL=0 ;;
        --epochs) EPOCHS=${2:-}; shift ;;
        --rounds) ROUNDS=${2:-}; shift ;;
        --rebuild-base) REBUILD_BASE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "containers: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    [[ $# -gt 0 ]] && shift
done
if ! [[ $ENGINE =~ ^(|docker|podman)$ && $S3 =~ ^(auto|minio|seaweedfs)$ && $EPOCHS =~ ^[1-9][0-9]*$
        && $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
    echo "containers: --engine takes docker or podman, --s3 minio or seaweedfs, --epochs and --rounds a number" >&2
    exit 2
fi

STATE=${AWSIO_CONTAINERS_DIR:-/var/tmp/awsio-containers}
LOGS=$STATE/logs
NICE=${AWSIO_NICE:-19}
S3_TIMEOUT=${AWSIO_S3_TIMEOUT:-120}
PY=${PYTHON:-python3}
PROJECT=awsio-check                 # compose project: never touches a user's own `awsio` stack
PODMAN_COMPOSE_VERSION=1.6.0
APT_PACKAGES="podman buildah runc netavark aardvark-dns iptables debootstrap"
BASE_TAG=localhost/awsio-python:3.11-bookworm
dockerfile_arg() { sed -n "s/^ARG $1=//p" "$2"; }
PYTHON_IMAGE=$(dockerfile_arg PYTHON_IMAGE docker/Dockerfile)
TORCH_VERSION=$(dockerfile_arg TORCH_VERSION docker/Dockerfile)
SEAWEEDFS_TAG=awsio-seaweedfs:$(dockerfile_arg SEAWEEDFS_VERSION docker/seaweedfs/Dockerfile)
MINIO_IMAGE=$(sed -n 's/^ *image: *\([^ ]*minio\/minio:[^ ]*\).*/\1/p' compose.yaml)
export TORCH_VARIANT=cpu            # the images compose expects: awsio:cpu, awsio-bench:cpu, awsio-test:cpu
mkdir -p "$LOGS"
exec 9>"$STATE/lock"
flock -n 9 || { echo "containers: FAILED: another scripts/containers.sh is running (lock: $STATE/lock)" >&2; exit 1; }
rm -f "$LOGS"/*.log

# -- bookkeeping: steps, timings, the last line ------------------------------------------------
T0=$SECONDS STEP=setup FAIL= STACK=0 INDEX_PID= BIND_DIR=
SUMMARY=()
note() { SUMMARY+=("$*"); echo "containers: $*"; }
fail() { FAIL=$*; exit 1; }
# WHY=... step NAME CMD...: run CMD with its output in $LOGS/NAME.log and its time in the summary;
# when it fails, the run ends with "FAILED: $WHY" (and the pytest summary line, if the log has one).
# CMD runs in the background so that `set -e` holds inside functions (an `||` would switch it off).
step() {
    local name=$1 t=$SECONDS rc=0 log=$LOGS/$1.log result
    shift
    STEP=$name
    echo "containers: [$name] $*" | cut -c1-160
    "$@" </dev/null >"$log" 2>&1 &
    wait $! || rc=$?
    SUMMARY+=("$(printf '%-15s %4ss  rc=%s' "$name" $((SECONDS - t)) "$rc")")
    if [[ $rc != 0 ]]; then
        tail -n 25 "$log" >&2
        result=$(pytest_summary "$log")
        fail "${WHY:-step $name failed}${result:+: $result} (log: $log)"
    fi
}
pytest_summary() { { grep -E '^=* ?[0-9]+ (passed|failed|error)' "$1" || true; } | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//'; }

finish() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ $STACK == 1 ]]; then
        teardown >"$LOGS/down.log" 2>&1
        local left
        left=$(leftovers | tr '\n' ' ')
        [[ -z $left ]] || FAIL=${FAIL:-"the stack was not fully removed: $left"}
    fi
    [[ -z $INDEX_PID ]] || kill "$INDEX_PID" 2>/dev/null
    [[ -z $BIND_DIR ]] || rm -rf "$BIND_DIR"
    printf '  %s\n' "${SUMMARY[@]}" "total $((SECONDS - T0))s"
    if [[ $rc == 0 && -z $FAIL ]]; then
        echo "containers: OK ($ENGINE, $MODE, $S3; $((SECONDS - T0))s; logs in $LOGS)"
        exit 0
    fi
    echo "containers: FAILED: ${FAIL:-step $STEP exited with status $rc (log: $LOGS/$STEP.log)}" >&2
    exit 1
}
trap finish EXIT
trap 'FAIL="interrupted"; exit 1' INT TERM

# -- 1. the engine ------------------------------------------------------------------------------
docker_works() {
    command -v docker >/dev/null && docker info >/dev/null 2>&1 \
        && docker buildx version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}
can_install() { [[ $INSTALL == 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; }
apt_install() { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
NO_PODMAN="podman is not installed and could not be (as root: apt-get install $APT_PACKAGES)"
if [[ -z $ENGINE ]] && docker_works; then
    ENGINE=docker
elif [[ -z $ENGINE ]]; then
    command -v podman >/dev/null || can_install \
        || fail "no container engine: docker (with buildx and compose) does not answer and $NO_PODMAN"
    ENGINE=podman
elif [[ $ENGINE == docker ]]; then
    docker_works || fail "docker does not answer (docker info, docker buildx version and docker compose version must all work)"
else
    command -v podman >/dev/null || can_install || fail "$NO_PODMAN"
fi
if [[ $ENGINE == podman ]]; then
    command -v podman >/dev/null || WHY="apt-get install $APT_PACKAGES failed" step install apt_install $APT_PACKAGES
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/docker/containers.conf}
    PC=$STATE/podman-compose/bin/podman-compose
    if ! "$PC" --version 2>/dev/null | grep -q "podman-compose version $PODMAN_COMPOSE_VERSION"; then
        WHY="could not install podman-compose $PODMAN_COMPOSE_VERSION from PyPI" step podman-compose \
            bash -c "rm -rf '$STATE/podman-compose' && '$PY' -m venv '$STATE/podman-compose' \
                     && '$STATE/podman-compose/bin/pip' install -q 'podman-compose==$PODMAN_COMPOSE_VERSION'"
    fi
    COMPOSE=("$PC")
    BUILD=(podman build --layers)
else
    COMPOSE=(docker compose)
    BUILD=(docker buildx build --load)
fi
"$ENGINE" info >"$LOGS/engine.log" 2>&1 || fail "$ENGINE does not run (log: $LOGS/engine.log)"

# -- 2. base image and torch: online or offline --------------------------------------------------
pulls() { timeout 300 "$ENGINE" pull -q "$1" >>"$LOGS/pull.log" 2>&1; }
if [[ $MODE == auto ]]; then
    if pulls "$PYTHON_IMAGE" && curl -sfI -m 20 https://download.pytorch.org/whl/cpu/torch/ >/dev/null; then
        MODE=online
    else
        MODE=offline
        note "offline mode: $PYTHON_IMAGE or download.pytorch.org is out of reach (log: $LOGS/pull.log)"
    fi
fi

# A stand-in for python:3.11-slim-bookworm: debootstrap minbase from this host's Debian mirror,
# Python 3.11 in a venv at /opt/python first on PATH (Debian's own pip refuses to install: PEP 668),
# no Python headers (the Dockerfile's builder installs them), this host's extra CA certificates (for
# a TLS-intercepting proxy in front of PyPI).
make_base_image() {
    local rootfs=$STATE/rootfs mirror
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    mirror=${mirror:-http://deb.debian.org/debian}
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
        bookworm "$rootfs" "$mirror"
    rm -f "$rootfs/etc/apt/sources.list"
    local suites
    for suites in "$mirror|bookworm bookworm-updates" "$mirror-security|bookworm-security"; do
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n%s\n\n' "${suites%|*}" "${suites#*|}" \
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    done >"$rootfs/etc/apt/sources.list.d/debian.sources"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        TMPDIR=/tmp chroot "$rootfs" update-ca-certificates
    fi
    TMPDIR=/tmp chroot "$rootfs" python3.11 -m venv /opt/python
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    tar --numeric-owner -C "$rootfs" -c . | "$ENGINE" import \
        --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' - "$BASE_TAG"
    rm -rf "$rootfs"
    "$ENGINE" run --rm "$BASE_TAG" sh -c 'test -z "$(dpkg --audit)" && python -c "import ssl, sys; print(sys.version)"'
}

# torch (the wheel pip finds locally) and its dependencies as a PEP 503 index (served on 127.0.0.1
# below): the Dockerfile hands TORCH_INDEX_URL to pip as --index-url, so they must all be there.
TORCH_INDEX=$STATE/torch-index
torch_index() {
    local f b n
    mkdir -p "$TORCH_INDEX/files"
    "$PY" -m pip download -q --only-binary=:all: --python-version 3.11 --platform "manylinux_2_28_$(uname -m)" \
        --platform "manylinux_2_17_$(uname -m)" -d "$TORCH_INDEX/files" "torch==$TORCH_VERSION"
    rm -rf "$TORCH_INDEX/simple"
    for f in "$TORCH_INDEX"/files/*.whl; do
        b=${f##*/}
        n=$(echo "${b%%-*}" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/-/g')   # PEP 503 name
        mkdir -p "$TORCH_INDEX/simple/$n"
        ln -sf "$f" "$TORCH_INDEX/simple/$n/$b"
    done
    ls "$TORCH_INDEX/simple"
}
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_free() {   # as http.server binds: SO_REUSEADDR (a last run's TIME_WAIT connections do not count)
    "$PY" -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $1))" 2>/dev/null
}

BUILD_ARGS=(--network host)         # offline: the torch index on this host's 127.0.0.1
if [[ $MODE == offline ]]; then
    if [[ $REBUILD_BASE == 1 ]] || ! "$ENGINE" image inspect "$BASE_TAG" >/dev/null 2>&1; then
        # (an existing base is kept: a new one has a new ID, which invalidates every cached layer)
        command -v debootstrap >/dev/null || { can_install && WHY="apt-get install debootstrap failed" \
            step install-debootstrap apt_install debootstrap; } \
            || fail "offline mode needs debootstrap to make its base image (apt-get install debootstrap)"
        WHY="could not make the offline base image $BASE_TAG" step base-image make_base_image
    fi
    WHY="could not get torch==$TORCH_VERSION and its dependencies" step torch-index torch_index
    # a fixed port: the URL is a build argument, and a new value would invalidate the cached layers
    port=${AWSIO_TORCH_INDEX_PORT:-8765}
    if ! port_free "$port"; then
        port=$(free_port)
        note "port ${AWSIO_TORCH_INDEX_PORT:-8765} is taken: torch index on $port (cached layers from torch on are rebuilt)"
    fi
    "$PY" -m http.server --bind 127.0.0.1 --directory "$TORCH_INDEX/simple" "$port" >"$LOGS/torch-index-http.log" 2>&1 &
    INDEX_PID=$!
    TORCH_INDEX_URL=http://127.0.0.1:$port/
    for _ in $(seq 50); do curl -sf "${TORCH_INDEX_URL}torch/" >/dev/null && break; sleep 0.2; done
    curl -sf "${TORCH_INDEX_URL}torch/" >/dev/null || fail "the local torch index on $TORCH_INDEX_URL does not answer"
    PYTHON_IMAGE=$BASE_TAG
    BUILD_ARGS+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
fi

# -- 3. the images -----------------------------------------------------------------------------
build() { nice -n "$NICE" "${BUILD[@]}" "$@" "$ROOT"; }
WHY="build of the test image (docker/Dockerfile --target test) failed" \
    step build-test build "${BUILD_ARGS[@]}" -f docker/Dockerfile --target test -t awsio-test:cpu
WHY="build of the bench image (docker/Dockerfile --target bench) failed" \
    step build-bench build "${BUILD_ARGS[@]}" -f docker/Dockerfile --target bench -t awsio-bench:cpu
WHY="build of the runtime image (docker/Dockerfile) failed" \
    step build-runtime build "${BUILD_ARGS[@]}" -f docker/Dockerfile --target runtime -t awsio:cpu

COMPOSE_FILES=(-f compose.yaml)
if [[ $S3 == auto ]]; then
    if pulls "$MINIO_IMAGE"; then S3=minio; else S3=seaweedfs; note "$MINIO_IMAGE cannot be pulled: SeaweedFS instead"; fi
elif [[ $S3 == minio ]]; then
    pulls "$MINIO_IMAGE" || fail "could not pull $MINIO_IMAGE (log: $LOGS/pull.log)"
fi
if [[ $S3 == seaweedfs ]]; then
    COMPOSE_FILES+=(-f docker/compose.seaweedfs.yaml)
    WHY="build of the SeaweedFS image (docker/seaweedfs/Dockerfile) failed" step build-s3 \
        build --network host --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" -f docker/seaweedfs/Dockerfile -t "$SEAWEEDFS_TAG"
fi
for image in awsio:cpu awsio-bench:cpu awsio-test:cpu; do
    note "image $image: $(( $("$ENGINE" image inspect -f '{{.Size}}' "$image") / 1000000 )) MB"
done

# -- 4. the stack ------------------------------------------------------------------------------
MINIO_PORT=$(free_port) MINIO_CONSOLE_PORT=$(free_port)
export MINIO_PORT MINIO_CONSOLE_PORT
# (no profiles for `up`: it would start every job; `run` and `down` name them)
compose() { nice -n "$NICE" "${COMPOSE[@]}" -p "$PROJECT" "${COMPOSE_FILES[@]}" "$@"; }
PROFILES=(--profile tests --profile jobs)
ours() { "$ENGINE" "$1" ls -q --filter "label=com.docker.compose.project=$PROJECT" "${@:2}"; }   # container|volume
service_id() { ours container -a --filter "label=com.docker.compose.service=$1" | head -1; }
teardown() {
    compose "${PROFILES[@]}" down -v
    local ids   # what `down` missed (e.g. a `run` container of an interrupted run)
    ids=$(ours container -a)
    [[ -z $ids ]] || "$ENGINE" rm -f $ids
    ids=$(ours volume)
    [[ -z $ids ]] || "$ENGINE" volume rm -f $ids
}
leftovers() { ours container -a | sed 's/^/container /'; ours volume | sed 's/^/volume /'; }
s3_healthy() {
    local id
    id=$(service_id minio)
    [[ -n $id ]] || return 1
    if [[ $ENGINE == podman ]]; then   # podman 4.3 runs health checks from systemd timers: run it here
        podman healthcheck run "$id" >/dev/null 2>&1
    else
        [[ $(docker inspect -f '{{.State.Health.Status}}' "$id") == healthy ]]
    fi
}
wait_s3() {
    local t=$SECONDS
    until s3_healthy; do
        if (( SECONDS - t >= S3_TIMEOUT )); then "$ENGINE" logs "$(service_id minio)"; return 1; fi
        sleep 2
    done
    echo "healthy after $((SECONDS - t))s"
}
init_done() {   # `up` starts init (buckets, demo shards); wait for it to exit, and with 0
    compose up -d
    local id rc
    id=$(service_id init)
    rc=$("$ENGINE" wait "$id")
    "$ENGINE" logs "$id"
    [[ $rc == 0 ]]
}

teardown >"$LOGS/down-before.log" 2>&1 || true    # what an interrupted run may have left
STACK=1
# podman-compose ignores `condition: service_healthy` with podman 4.3: the S3 server comes up first,
# and the rest (init) once it is healthy; docker compose would wait by itself. The jobs then run
# with --no-deps: their dependencies are up and done, and podman-compose's --requires on the init
# container broke `run train` now and then ("depends on container ... not found in input list").
WHY="the S3 server ($S3) did not start" step s3-up compose up -d minio
WHY="the S3 server ($S3) never became healthy in ${S3_TIMEOUT}s" step s3-healthy wait_s3
WHY="init (buckets and demo shards) failed" step init init_done
WHY="the integration suite in the tests service failed" step tests compose "${PROFILES[@]}" run --rm --no-deps -T tests
note "integration suite in the test image ($S3): $(pytest_summary "$LOGS/tests.log")"

# The train job, and the same training on this host against the same server, taking turns.
TRAIN_ARGS=("trainer.epochs=$EPOCHS" trainer.progress=false)
host_train() {
    AWS_ENDPOINT_URL=http://127.0.0.1:$MINIO_PORT AWS_ACCESS_KEY_ID=${MINIO_ROOT_USER:-awsio} \
    AWS_SECRET_ACCESS_KEY=${MINIO_ROOT_PASSWORD:-awsio-local-secret} AWS_REGION=${AWS_REGION:-us-east-1} \
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHON=$PY \
        nice -n "$NICE" scripts/train.sh "${AWSIO_NPROC:-2}" "${TRAIN_ARGS[@]}" "trainer.run_dir=$STATE/host-train"
}
rate() {   # median samples/s of the "epoch N: ... X samples/s" lines train prints
    "$PY" -c 'import re, statistics, sys
print(statistics.median(float(x) for x in re.findall(r"^epoch \d+: .* (\d+) samples/s", open(sys.argv[1]).read(), re.M)))' "$1"
}
HOST=1
"$PY" -c 'import awsio._native, hydra, torch' 2>/dev/null || HOST=0
RATIOS=()
for ((r = 1; r <= ROUNDS; r++)); do
    n=                          # step names: train, host-train, then train-2, host-train-2, ...
    (( r == 1 )) || n=-$r
    order=(container host)
    (( r % 2 )) || order=(host container)
    for where in "${order[@]}"; do
        if [[ $where == container ]]; then
            WHY="the train job failed" step "train$n" compose "${PROFILES[@]}" run --rm --no-deps -T train "${TRAIN_ARGS[@]}"
        elif [[ $HOST == 1 ]]; then
            WHY="the same train job on this host failed" step "host-train$n" host_train
        fi
    done
    [[ $HOST == 1 ]] || break
    RATIOS+=("$(rate "$LOGS/train$n.log") $(rate "$LOGS/host-train$n.log")")
done
if [[ $HOST == 1 ]]; then
    note "train samples/s, container vs host, $ROUNDS round(s) of $EPOCHS epoch(s): $("$PY" -c 'import statistics, sys
pairs = [tuple(map(float, p.split())) for p in sys.argv[1:]]
ratios = sorted(c / h for c, h in pairs)
print(f"container {statistics.median(c for c, _ in pairs):.0f}, host {statistics.median(h for _, h in pairs):.0f}, "
      f"ratio {statistics.median(ratios):.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x)")' "${RATIOS[@]}")"
else
    note "train samples/s in the container: $(rate "$LOGS/train.log") (no awsio with its native reader for $PY here: no host figure)"
fi
WHY="the bench job failed" step bench compose "${PROFILES[@]}" run --rm --no-deps -T bench \
    epochs=1 min_mib=0 rounds=1 num_workers=0 'loaders=[awsio,boto3]'
WHY="train or bench results are missing from the results volume" step results \
    "$ENGINE" run --rm -v "${PROJECT}_results:/app/results:ro" awsio:cpu shell -c \
    'ls -d bench_results/run-*/results.csv && cat runs/train/metrics.jsonl'

# an empty folder bind-mounted at /app/results (the entry point must make runs/ and bench_results/)
BIND_DIR=$(mktemp -d "$STATE/bind-results.XXXXXX")
chmod 0777 "$BIND_DIR"
WHY="train with an empty folder bind-mounted at /app/results failed" step bind-mount \
    "$ENGINE" run --rm --network host -v "$BIND_DIR:/app/results" -e AWSIO_NPROC=1 \
    -e "AWS_ENDPOINT_URL=http://127.0.0.1:$MINIO_PORT" -e "AWS_ACCESS_KEY_ID=${MINIO_ROOT_USER:-awsio}" \
    -e "AWS_SECRET_ACCESS_KEY=${MINIO_ROOT_PASSWORD:-awsio-local-secret}" awsio:cpu \
    train trainer.epochs=1 data.max_steps_per_epoch=2 trainer.progress=false
[[ -s $BIND_DIR/runs/train/metrics.jsonl ]] || fail "train wrote no runs/train/metrics.jsonl into the bind-mounted /app/results"
