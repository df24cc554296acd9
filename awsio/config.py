"""Configuration: :class:`S3Config`, a frozen dataclass validated on construction.

Every field left as ``None`` is filled from the standard AWS environment when the config is made:

=================  =====================================================================
endpoint_url       ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, ``S3_ENDPOINT_URL`` (the
                   original S3 plugin's variable; ``S3_USE_HTTPS=0`` turns a bare host into http)
region             ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's region, else us-east-1
profile            ``AWS_PROFILE``
verify             ``S3_VERIFY_SSL`` (0/false disables TLS verification; on by default)
ca_bundle          ``AWS_CA_BUNDLE``
backend            ``AWSIO_BACKEND``: auto | native | python
max_inflight_bytes ``AWSIO_MAX_INFLIGHT_BYTES`` (default 128 MiB)
buffer_pool_bytes  ``AWSIO_BUFFER_POOL_BYTES`` (default twice max_inflight_bytes; 0 turns it off)
part_size          ``AWSIO_PART_SIZE`` (default 8 MiB on AWS, 0 with a custom endpoint_url)
=================  =====================================================================

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
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable
from urllib.parse import urlsplit

from awsio.errors import ConfigError

__all__ = ["Credentials", "S3Config", "credentials_provider"]

_BACKENDS = ("auto", "native", "python")
_FALSE = {"0", "false", "no", "off"}


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _env_int(name: str, default: int) -> Any:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return value  # reported by _validate with the field's name


@dataclass(frozen=True)
class S3Config:
    """How to reach S3. Immutable; make a changed copy with :meth:`replace`.

    Raises :class:`awsio.errors.ConfigError` (a ``ValueError``) naming the field for invalid values.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    path_style: bool | None = None
    unsigned: bool = False
    verify: bool | None = None
    ca_bundle: str | None = None
    max_connections: int = 32
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 5
    backend: str | None = None
    max_inflight_bytes: int | None = None
    buffer_pool_bytes: int | None = None
    part_size: int | None = None
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
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError("endpoint_url must look like http(s)://host[:port]",
                                  field="endpoint_url", value=endpoint)
        set_("endpoint_url", endpoint)
        if self.profile is None:
            set_("profile", _env("AWS_PROFILE"))
        if self.region is None:
            set_("region", _env("AWS_REGION", "AWS_DEFAULT_REGION") or self._profile_region() or "us-east-1")
        if self.path_style is None:
            # Custom endpoints (MinIO, SeaweedFS, Ceph...) rarely serve virtual-hosted buckets.
            set_("path_style", endpoint is not None)
        if self.verify is None:
            set_("verify", os.environ.get("S3_VERIFY_SSL", "1").lower() not in _FALSE)
        if self.ca_bundle is None:
            set_("ca_bundle", _env("AWS_CA_BUNDLE"))
        if self.backend is None:
            set_("backend", (_env("AWSIO_BACKEND") or "auto").lower())
        if self.max_inflight_bytes is None:
            set_("max_inflight_bytes", _env_int("AWSIO_MAX_INFLIGHT_BYTES", 128 << 20))
        if self.buffer_pool_bytes is None:
            default = 2 * self.max_inflight_bytes if isinstance(self.max_inflight_bytes, int) else 0
            set_("buffer_pool_bytes", _env_int("AWSIO_BUFFER_POOL_BYTES", default))
        if self.part_size is None:
            set_("part_size", _env_int("AWSIO_PART_SIZE", 0 if endpoint is not None else 8 << 20))
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
        if self.max_connections > 1024:
            raise ConfigError("max_connections must be at most 1024", field="max_connections",
                              value=self.max_connections)
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds", field=name, value=value)
        if not isinstance(self.region, str) or not self.region:
            raise ConfigError("region must be a non-empty string", field="region", value=self.region)
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ConfigError("ca_bundle file does not exist", field="ca_bundle", value=self.ca_bundle)
        for name in ("unsigned", "path_style", "verify"):
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
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "static_credentials"}


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

    session = botocore.session.Session(profile=config.profile)
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
