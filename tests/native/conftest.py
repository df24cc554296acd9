"""Fixtures for the native reader's tests: skip them all when ``awsio._native`` is not built.

The scriptable HTTP stub (``stub``, ``tls_stub`` fixtures) is shared with the Python backend's
tests: it lives in ``tests/http_stub.py`` and ``tests/conftest.py``.
"""

from __future__ import annotations

import pytest
from http_stub import Reply, Seen, Stub, error_xml, object_reply

native = pytest.importorskip("awsio._native", reason="awsio._native is not built")

__all__ = ["Reply", "Seen", "Stub", "error_xml", "native", "object_reply"]
