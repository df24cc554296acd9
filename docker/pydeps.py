"""Print awsio's runtime requirements (core + the named extras) from pyproject.toml, one per line.

The image installs these in a layer of its own *before* copying the source, so editing awsio's code
does not re-download its dependencies. pyproject.toml stays the one place they are declared.

    python docker/pydeps.py pyproject.toml harness peers > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """Core dependencies plus those of each extra, de-duplicated, in declaration order.

    Raises KeyError naming an extra that pyproject.toml does not declare.
    """
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    out: list[str] = []
    for req in list(project.get("dependencies", [])) + [r for e in extras for r in optional[e]]:
        if req not in out:
            out.append(req)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: pydeps.py PYPROJECT [EXTRA ...]", file=sys.stderr)
        return 2
    try:
        reqs = requirements(argv[0], argv[1:])
    except KeyError as e:
        print(f"pydeps.py: no extra {e} in {argv[0]}", file=sys.stderr)
        return 2
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
