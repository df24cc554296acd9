# Types of the compiled native reader (csrc/binding.cpp); tests/native/test_native_stub_types.py
# checks that this file and the module name the same things.
from typing import Any, Optional, Sequence

curl_version: str

class Options:
    """The engine's settings (AWSIO_ENGINE_OPTIONS in csrc/s3_core.hpp), set by name."""

    endpoint: str
    region: str
    path_style: bool
    unsigned: bool
    verify: bool
    ca_bundle: str
    max_connections: int
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    deadline: float
    backoff_base: float
    backoff_cap: float
    max_inflight_bytes: int
    part_size: int
    verify_checksums: bool
    def __init__(self) -> None: ...

class BufferPool:
    min_size: int
    def __init__(self, limit: int) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def clear(self) -> None: ...
    @staticmethod
    def capacity_for(size: int) -> int: ...

class RateLimiter:
    """Paces the attempts of every client it is given to once S3 throttles (see ratelimit.py)."""

    def __init__(self) -> None: ...
    @property
    def rate(self) -> Optional[float]: ...

class Result:
    """One finished request. kind: "ok" (data: the body), "whole" (data: the whole object although a
    range was asked), "head" (size, etag, last_modified), or an error: "http" (status, code,
    message, request_id, region), "integrity" (status, code, reason, request_id, expected, got),
    "conn" (status, code, reason). Every result: attempts, requests (HTTP attempts, parts
    included), retries (by cause, as awsio.metrics.CAUSES), ttfb (seconds, or None)."""

    tag: int
    kind: str
    data: Optional[bytes]
    size: Optional[int]
    etag: Optional[str]
    last_modified: Optional[int]
    status: Optional[int]
    code: Optional[str]
    message: Optional[str]
    request_id: Optional[str]
    region: Optional[str]
    reason: Optional[str]
    expected: Optional[str]
    got: Optional[str]
    attempts: int
    requests: int
    retries: tuple[int, int, int, int, int]
    ttfb: Optional[float]

class Client:
    def __init__(self, options: Options, pool: Optional[BufferPool] = None,
                 limiter: Optional[RateLimiter] = None) -> None: ...
    def set_credentials(self, access_key: str, secret_key: str, token: str) -> None: ...
    def object_url(self, bucket: str, key: str) -> str: ...
    def submit(self, tag: int, bucket: str, key: str, start: int = 0, end: int = -1, head: bool = False,
               size: int = -1, cuts: Sequence[int] = (), query: str = "", if_match: str = "",
               allocate: bool = False) -> None: ...
    # allocate: the body of a GET with size given (its range, or the whole object) is allocated
    # now, while the caller holds the GIL, not by the engine at its first byte (which takes the GIL
    # from whatever Python thread holds it, stalling every transfer); it counts against
    # max_inflight_bytes from now on, and the caller bounds what it submits.
    # With cuts, an "ok" result's data is a tuple of bytes (the body cut there) when the reply was
    # exactly the range; otherwise bytes, as without.
    def wait(self, timeout: float = -1.0) -> list[Result]: ...
    def cancel_all(self) -> None: ...
    def wakeup(self) -> None: ...
    def pending(self) -> int: ...
    def budget(self) -> tuple[int, int]: ...
    def abandon(self) -> None: ...

def uri_encode(s: str, keep_slash: bool = True) -> str: ...
def canonical_query(params: list[tuple[str, str]]) -> str: ...
def xml_field(body: str, tag: str) -> str: ...
def checksum(algorithm: str, data: bytes, piece: int = 0) -> str: ...
def checksum_algorithms() -> list[str]: ...

# JPEG (csrc/jpeg.hpp), for awsio.image. HAVE_JPEG: this build has libjpeg; without it both
# functions raise NotImplementedError. Corrupt or truncated data raises RuntimeError with
# libjpeg's reason; a CMYK/YCCK JPEG NotImplementedError; a box outside the image ValueError.
HAVE_JPEG: bool

def jpeg_header(data: bytes) -> tuple[int, int, int, bool]:
    """(width, height, components, progressive)."""
    ...

def jpeg_decode_crop(data: bytes, x: int, y: int, w: int, h: int, min_w: int = 0, min_h: int = 0,
                     scale_num: int = 0, fast_idct: bool = False,
                     fancy_upsampling: bool = True) -> tuple[Any, int, int, int]:
    """RGB uint8 pixels (H x W x 3 numpy array) of the box (x, y, w, h) (full-resolution pixels)
    decoded at scale N/8: N the smallest of 1, 2, 4, 8 keeping the scaled box >= min_w x min_h,
    or scale_num (1..8). The array covers [floor(x*N/8), ceil((x+w)*N/8)) of the scaled image across, and
    likewise down. Returns (pixels, x0, y0, N), (x0, y0) the array's origin in the scaled image.
    fast_idct: JDCT_IFAST (else JDCT_ISLOW); fancy_upsampling false: chroma by replication."""
    ...

def hwc_to_chw(pixels: Any, lut: Any, flip: bool = False) -> Any:
    """H x W x 3 uint8 array -> 3 x H x W float32 array, channel c's value v becoming lut[c, v]
    (lut: 3 x 256 float32), mirrored left-right when flip."""
    ...
