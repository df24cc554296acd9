"""Fixtures for the native reader's tests: skip them all when ``awsio._native`` is not built, or
fail them when it should have been (libcurl's headers are installed: ``conftest.native_expected``).

The scriptable HTTP stub (``stub``, ``tls_stub`` fixtures) is shared with the Python backend's
tests: it lives in ``tests/http_stub.py`` and ``tests/conftest.py``.
"""

from __future__ import annotations

import pytest
from conftest import skip_or_fail_without_native
from http_stub import Reply, Seen, Stub, error_xml, object_reply

try:
    from awsio import _native as native
except ImportError:
    try:
        skip_or_fail_without_native()
    except pytest.skip.Exception as exc:
        raise pytest.skip.Exception(str(exc), allow_module_level=True) from None

__all__ = ["Reply", "Seen", "Stub", "error_xml", "native", "object_reply"]
