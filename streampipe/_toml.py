"""``tomllib`` on Python >= 3.11, the ``tomli`` backport (a dependency there) on 3.10."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["tomllib"]
