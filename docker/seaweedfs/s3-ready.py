#!/usr/bin/env python
"""Health check: exit 0 when the S3 server on 127.0.0.1:9000 answers HTTP (an anonymous GET of
the bucket list is refused with 403, which is an answer), 1 otherwise."""
import sys
import urllib.error
import urllib.request

try:
    urllib.request.urlopen("http://127.0.0.1:9000/", timeout=3)
except urllib.error.HTTPError:
    pass
except OSError as exc:
    sys.exit(f"s3-ready: {exc}")
