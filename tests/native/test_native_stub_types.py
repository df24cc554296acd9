"""``awsio/_native.pyi`` names exactly what the compiled module exports, member by member."""

from __future__ import annotations

import ast
import os

import awsio

from .conftest import native

PYI = os.path.join(os.path.dirname(awsio.__file__), "_native.pyi")


def _declared() -> dict[str, set[str]]:
    """Top-level names of the stub (aliases of types left out), each class with its members."""
    out: dict[str, set[str]] = {}
    with open(PYI) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {n.target.id if isinstance(n, ast.AnnAssign) else n.name  # type: ignore[union-attr]
                              for n in node.body if isinstance(n, (ast.AnnAssign, ast.FunctionDef))
                              and not (isinstance(n, ast.FunctionDef) and n.name.startswith("__"))}
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = set()
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = set()  # type: ignore[union-attr]
    return out


def test_the_stub_matches_the_module():
    declared = _declared()
    exported = {n for n in dir(native) if not n.startswith("__")}
    assert set(declared) == exported
    for name, members in declared.items():
        obj = getattr(native, name)
        if isinstance(obj, type):
            assert members == {m for m in dir(obj) if not m.startswith("_")}, name
