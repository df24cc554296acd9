"""Roles: which field of a sample is "the image" and which is "the target".

``transform_fn(image=preproc)`` and ``to_tuple("jpg;png", "cls")`` both name fields indirectly.
A name is resolved against a sample's fields like this:

* a field named exactly ``name`` wins (e.g. after ``rename(image="jpg;png")``);
* a role name (``image``, ``target``, ``text``, ``json``, ``array``) stands for its list of
  extensions, in order of preference (``image`` -> jpg, jpeg, png, ...; ``target`` -> cls, cls2,
  class, index, inx, label, id, target);
* any other name is a ``;``-separated list of alternatives (``"jpg;png"``, ``"seg.png"``);
* each alternative matches the field of exactly that name first, then a field ending in
  ``.<alternative>`` (``png`` matches ``seg.png``), preferring earlier alternatives.
"""

from __future__ import annotations

from typing import Any, Mapping

from awsio.decode.basic import CLASS_EXTENSIONS, TEXT_EXTENSIONS

__all__ = ["ROLES", "candidates", "find_field"]

ROLES: dict[str, tuple[str, ...]] = {
    "image": ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "pbm", "pnm", "bmp", "gif", "tif",
              "tiff", "jpe", "jfif", "tga"),
    "target": CLASS_EXTENSIONS,
    "text": TEXT_EXTENSIONS,
    "json": ("json", "jsn"),
    "array": ("npy", "npz", "pth"),
}


def candidates(name: str) -> tuple[str, ...]:
    """The field alternatives that ``name`` (a role or ``"a;b"``) stands for, in preference order."""
    if name in ROLES:
        return ROLES[name]
    return tuple(part for part in name.split(";") if part)


def find_field(sample: Mapping[str, Any], name: str) -> str | None:
    """The field of ``sample`` that ``name`` resolves to, or None."""
    if name in sample:  # a field named like the role (after .rename(image=...)) wins
        return name
    fields = [f for f in sample if not f.startswith("__")]
    for alt in candidates(name):
        if alt in sample:
            return alt
        tail = "." + alt
        for f in fields:
            if f.endswith(tail) or f.lower() == alt or f.lower().endswith(tail):
                return f
    return None
