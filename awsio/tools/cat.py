"""Write S3 objects (or local files) to stdout: ``python -m awsio.tools.cat [--endpoint-url U] s3://b/k``.

Used as webdataset's ``pipe:`` command so that the benchmark needs no AWS CLI. Streams in chunks
through :meth:`awsio.s3.client.S3Client.open` when available.
"""

from __future__ import annotations

import sys
from typing import Sequence

from awsio.tools.storage import Storage, is_s3

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    config = None
    if len(args) >= 2 and args[0] == "--endpoint-url":
        from awsio.config import S3Config

        config = S3Config(endpoint_url=args[1])
        args = args[2:]
    if not args:
        print("usage: python -m awsio.tools.cat [--endpoint-url URL] URL...", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    storage = Storage(config)
    try:
        for url in args:
            if not is_s3(url):
                with open(url, "rb") as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                continue
            client = storage._s3()
            if hasattr(client, "open"):
                reader = client.open(url)
                while chunk := reader.read(1 << 20):
                    out.write(chunk)
                reader.close()
            else:
                out.write(storage.get(url))
        out.flush()
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as e:
        from awsio.logsafe import redact

        print(f"awsio.tools.cat: error: {redact(str(e))}", file=sys.stderr)
        return 1
    finally:
        storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
