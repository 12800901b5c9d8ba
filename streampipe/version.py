"""The package version (one place: the run file records it, ``pyproject.toml`` repeats it)."""

__version__ = "0.1.0"
