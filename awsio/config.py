"""Configuration: :class:`S3Config`, a frozen dataclass validated on construction.

Each setting is defined once, as a field of :class:`S3Config` whose metadata holds its
documentation (``doc``), the environment variables that fill it when it is left as ``None``
(``env``) and whether the native engine takes it (``native``: copied by name into
``awsio._native.Options``, whose C++ side is one line of ``AWSIO_ENGINE_OPTIONS`` in
``csrc/s3_core.hpp``). The README's settings table, the Hydra jobs' list of known ``s3.*``
settings and the native options all come from these fields (:func:`settings_table`,
:func:`setting_names`), so a new setting is a field here and, if the native engine needs it, a
line in ``csrc/s3_core.hpp``.

``max_inflight_bytes`` bounds the response bodies the native reader holds at once (being
received, or received and not yet handed to the caller): a response that would go over waits,
paused in its socket, until earlier results are taken; a body larger than the whole budget is
read alone. ``buffer_pool_bytes`` is how much memory of freed large bodies (>= 1 MiB) the native
reader keeps to reuse: writing into fresh memory costs a page fault per 4 KiB, which on large
objects is most of the client's CPU. ``part_size``: the native reader asks for the first part
of a whole object (or of a range over twice this size); the reply gives the size, and the rest
comes in parts of this size over parallel connections, pinned to the first part's ETag. S3 caps
each connection at roughly 100 MB/s, so parts are what makes one large object fast there. A
custom endpoint (MinIO, SeaweedFS, Ceph on a LAN) streams an object over one connection at full
speed, and extra requests only cost it CPU (8 MiB parts were 12-20 % slower against a local
SeaweedFS), so parts are off there unless asked for.

Credentials are not part of the config: they come from the botocore credential chain
(environment, shared files, SSO, container and instance roles) through :func:`credentials_provider`,
and refreshable ones are refreshed before expiry by whichever backend is in use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable
from urllib.parse import urlsplit

from awsio.errors import ConfigError

__all__ = ["Credentials", "S3Config", "credentials_provider", "setting_names", "settings_table"]

_BACKENDS = ("auto", "native", "python")
_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}
# Upper bounds: larger values would overflow the native engine's options (int, size_t) or the
# Python backend's socket timeouts, and fail deep inside a read with an untyped error.
_MAX_TIMEOUT_S = 86400.0
_MAX_ATTEMPTS = 1000
_MAX_BYTES = 1 << 60

_REGION = re.compile(r"[A-Za-z0-9._-]+")  # (us-east-1, auto, RegionOne, ...: no spaces or slashes)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _from_env(names: tuple[str, ...], fallback: Any) -> Any:
    """The first of ``names`` set in the environment, as the type of ``fallback``, else ``fallback``."""
    value = _env(*names)
    if value is None:
        return fallback
    if isinstance(fallback, bool):
        word = value.strip().lower()
        if word in _FALSE or word in _TRUE:
            return word in _TRUE
        return value  # reported by _validate with the field's name
    if isinstance(fallback, int):
        try:
            return int(value)
        except ValueError:
            return value  # reported by _validate with the field's name
    return value


def _setting(default: Any, *, doc: str, env: tuple[str, ...] = (), native: bool = False,
             **fallback: Any) -> Any:
    """A field of S3Config: its default, documentation, environment variables (tried in order when
    the value is None; ``fallback=`` gives the default when none is set, otherwise __post_init__
    works it out) and whether the native engine takes it (by the same name)."""
    return field(default=default, metadata={"doc": doc, "env": env, "native": native, **fallback})


@dataclass(frozen=True)
class S3Config:
    """How to reach S3. Immutable; make a changed copy with :meth:`replace`.

    Raises :class:`awsio.errors.ConfigError` (a ``ValueError``) naming the field for invalid values.
    """

    endpoint_url: str | None = _setting(
        None, env=("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL"),
        doc="a custom endpoint, http(s)://host[:port] (`S3_USE_HTTPS=0` makes a bare host http); "
            "default: the regional AWS endpoint")
    region: str | None = _setting(
        None, env=("AWS_REGION", "AWS_DEFAULT_REGION"), native=True,
        doc="the profile's region, else `us-east-1`, when no variable is set")
    profile: str | None = _setting(None, env=("AWS_PROFILE",), fallback=None,
                                   doc="the shared-config profile for credentials and region")
    path_style: bool | None = _setting(None, native=True,
                                       doc="path-style URLs; on by default for a custom endpoint, off for AWS")
    unsigned: bool = _setting(False, native=True, doc="`True` reads public buckets without credentials")
    verify: bool | None = _setting(None, env=("S3_VERIFY_SSL",), fallback=True, native=True,
                                   doc="TLS certificate verification (`0` disables it)")
    ca_bundle: str | None = _setting(None, env=("AWS_CA_BUNDLE",), fallback=None, native=True,
                                     doc="a CA bundle file for TLS verification")
    max_connections: int = _setting(32, native=True, doc="requests in flight at once (1-1024)")
    connect_timeout: float = _setting(10.0, native=True, doc="seconds to connect")
    read_timeout: float = _setting(60.0, native=True,
                                   doc="seconds without a byte before a transfer is retried")
    max_attempts: int = _setting(5, native=True, doc="attempts per request, the first included")
    backend: str | None = _setting(None, env=("AWSIO_BACKEND",), fallback="auto",
                                   doc="`auto` (native if built) / `native` / `python`")
    max_inflight_bytes: int | None = _setting(
        None, env=("AWSIO_MAX_INFLIGHT_BYTES",), fallback=128 << 20, native=True,
        doc="default 128 MiB: response bodies the native reader holds at once; a reply that would go "
            "over waits, paused in its socket, until earlier results are taken (one larger body is read alone)")
    buffer_pool_bytes: int | None = _setting(
        None, env=("AWSIO_BUFFER_POOL_BYTES",),
        doc="default twice `max_inflight_bytes`, `0` off: freed bodies of 1 MiB or more that the native "
            "reader keeps and fills again instead of asking the kernel for fresh, zeroed pages")
    keep_freed_memory: bool | None = _setting(
        None, env=("AWSIO_KEEP_FREED_MEMORY",), fallback=True,
        doc="keep freed memory in the process (glibc's `mallopt` thresholds at their own ceilings, 32 MiB "
            "and 64 MiB) so that each batch's bytes reuse the last one's pages instead of faulting in "
            "fresh ones; `0` leaves glibc's defaults (see `awsio.memory`)")
    part_size: int | None = _setting(
        None, env=("AWSIO_PART_SIZE",), native=True,
        doc="8 MiB on AWS, where each connection is capped (about 100 MB/s) and a large object needs "
            "parallel ranged GETs; 0 (one request per object) for a custom endpoint, where one stream "
            "runs at full speed and parts only cost CPU")
    verify_checksums: bool | None = _setting(
        None, env=("AWSIO_VERIFY_CHECKSUMS",), fallback=True, native=True,
        doc="check a whole-object GET's body against the full-object checksum S3 sends "
            "(`x-amz-checksum-*`); `0` skips the check (the same requests are sent)")
    # Not a user knob: lets tests inject credentials without touching the environment.
    static_credentials: tuple[str, str, str | None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__.__get__(self)  # frozen: fill defaults in place once
        endpoint = self.endpoint_url
        if endpoint is None:
            endpoint = _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")
            if endpoint and "://" not in endpoint:
                scheme = "http" if os.environ.get("S3_USE_HTTPS", "1").lower() in _FALSE else "https"
                endpoint = f"{scheme}://{endpoint}"
        if endpoint is not None:
            endpoint = endpoint.rstrip("/")
            parts = urlsplit(endpoint)
            if parts.username is not None or parts.password is not None:
                raise ConfigError("endpoint_url must not hold a user or password (requests are signed "
                                  "with the AWS credentials)", field="endpoint_url",
                                  value=f"{parts.scheme}://***@{parts.netloc.rpartition('@')[2]}")
            try:
                port_ok = parts.port is None or parts.port > 0
            except ValueError:  # not a number, or over 65535
                port_ok = False
            if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
                raise ConfigError("endpoint_url must look like http(s)://host[:port]",
                                  field="endpoint_url", value=endpoint)
        set_("endpoint_url", endpoint)
        for f in fields(self):  # the plain ones: the environment, else a fixed default
            if getattr(self, f.name) is None and "fallback" in f.metadata:
                set_(f.name, _from_env(f.metadata["env"], f.metadata["fallback"]))
        if self.region is None:
            set_("region", _env("AWS_REGION", "AWS_DEFAULT_REGION") or self._profile_region() or "us-east-1")
        if self.path_style is None:
            # Custom endpoints (MinIO, SeaweedFS, Ceph...) rarely serve virtual-hosted buckets.
            set_("path_style", endpoint is not None)
        if isinstance(self.backend, str):
            set_("backend", self.backend.lower())
        if self.buffer_pool_bytes is None:
            default = 2 * self.max_inflight_bytes if isinstance(self.max_inflight_bytes, int) else 0
            set_("buffer_pool_bytes", _from_env(("AWSIO_BUFFER_POOL_BYTES",), default))
        if self.part_size is None:
            set_("part_size", _from_env(("AWSIO_PART_SIZE",), 0 if endpoint is not None else 8 << 20))
        self._validate()

    def _validate(self) -> None:
        if self.backend not in _BACKENDS:
            raise ConfigError(f"backend must be one of {_BACKENDS}", field="backend", value=self.backend)
        for name, least, what in (("max_connections", 1, "a positive integer"),
                                  ("max_attempts", 1, "a positive integer"),
                                  ("max_inflight_bytes", 1, "a positive number of bytes"),
                                  ("buffer_pool_bytes", 0, "a non-negative number of bytes"),
                                  ("part_size", 0, "a non-negative number of bytes")):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{name} must be {what}", field=name, value=value)
        for name, most in (("max_connections", 1024), ("max_attempts", _MAX_ATTEMPTS),
                           ("max_inflight_bytes", _MAX_BYTES), ("buffer_pool_bytes", _MAX_BYTES),
                           ("part_size", _MAX_BYTES)):
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}", field=name, value=getattr(self, name))
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or not 0 < value <= _MAX_TIMEOUT_S):  # (NaN and inf fail too)
                raise ConfigError(f"{name} must be a positive number of seconds, at most {_MAX_TIMEOUT_S:g}",
                                  field=name, value=value)
        if not isinstance(self.region, str) or not _REGION.fullmatch(self.region):
            raise ConfigError("region must be a region name (letters, digits, '-', '_', '.'), as it goes into "
                              "every request's signature", field="region", value=self.region)
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ConfigError("ca_bundle file does not exist", field="ca_bundle", value=self.ca_bundle)
        for name in ("unsigned", "path_style", "verify", "verify_checksums", "keep_freed_memory"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool", field=name, value=getattr(self, name))

    def _profile_region(self) -> str | None:
        try:
            import botocore.session

            session = botocore.session.Session(profile=self.profile)
            region = session.get_config_variable("region")
            return str(region) if region else None
        except Exception:  # a missing or broken profile file must not break config creation
            return None

    def replace(self, **changes: Any) -> S3Config:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @property
    def endpoint(self) -> str:
        """The endpoint actually used: the custom one, or the regional AWS endpoint."""
        if self.endpoint_url:
            return self.endpoint_url
        return f"https://s3.{self.region}.amazonaws.com"

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain values (no credentials), for logs and result tables."""
        return {name: getattr(self, name) for name in setting_names()}

    def native_options(self) -> dict[str, Any]:
        """The settings the native engine takes (fields marked ``native``), by name; None left out."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata.get("native") and getattr(self, f.name) is not None}


def setting_names() -> list[str]:
    """Every user setting of :class:`S3Config`, in declaration order."""
    return [f.name for f in fields(S3Config) if "doc" in f.metadata]


def settings_table() -> str:
    """The README's settings table (Markdown), made from the fields' metadata."""
    rows = ["| setting | environment | meaning |", "| --- | --- | --- |"]
    for f in fields(S3Config):
        if "doc" not in f.metadata:
            continue
        env = ", ".join(f"`{e}`" for e in f.metadata["env"]) or "-"
        rows.append(f"| `{f.name}` | {env} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class Credentials:
    """A frozen set of credentials. ``repr`` never shows the secret or token."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def _env_credentials() -> Credentials | None:
    """Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ token), as botocore's
    EnvProvider reads them; None unless both keys are set and non-empty."""
    env = os.environ
    ak, sk = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if not ak or not sk:
        return None
    token = env.get("AWS_SECURITY_TOKEN", "") or env.get("AWS_SESSION_TOKEN", "")
    return Credentials(ak, sk, token or None)


def _chain_provider(config: S3Config) -> Callable[[], Credentials]:
    """The full botocore credential chain (refreshes credentials shortly before expiry)."""
    import botocore.session

    from awsio.logsafe import redact_aws_logs

    session = botocore.session.Session(profile=config.profile)
    redact_aws_logs()  # (STS, SSO and metadata replies are logged at DEBUG: the native backend too)
    found = session.get_credentials()
    if found is None:
        from awsio.errors import AccessDeniedError

        raise AccessDeniedError(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, "
            "or use S3Config(unsigned=True) for public buckets)",
            url=None, status=None, code="NoCredentials", request_id=None,
        )

    def current() -> Credentials:
        frozen = found.get_frozen_credentials()  # refreshes if close to expiry
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    return current


def credentials_provider(config: S3Config) -> Callable[[], Credentials | None]:
    """Return a callable giving current credentials (None for unsigned requests).

    The same answer as the botocore chain (environment, shared files, SSO, container and
    instance roles), so refreshable credentials are refreshed shortly before they expire;
    callers ask again before each batch of requests. botocore's chain tries the environment
    first unless a profile is named, so environment credentials are read directly, without
    importing botocore (~70 ms of CPU in every DataLoader worker); they are read again on each
    call, and the chain is built if they disappear.
    Raises :class:`awsio.errors.AccessDeniedError` if no credentials can be found.
    """
    if config.unsigned:
        return lambda: None
    if config.static_credentials is not None:
        ak, sk, tok = config.static_credentials
        creds = Credentials(ak, sk, tok)
        return lambda: creds
    if config.profile is not None or _env_credentials() is None:
        return _chain_provider(config)
    chain: list[Callable[[], Credentials]] = []

    def current() -> Credentials:
        found = _env_credentials()
        if found is not None:
            return found
        if not chain:
            chain.append(_chain_provider(config))
        return chain[0]()

    return current
