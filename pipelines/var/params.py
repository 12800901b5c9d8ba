"""Checked access to a stage's ``[stages.params]`` table; errors name the stage and the key."""

from __future__ import annotations

from typing import Any

__all__ = ["ParamError", "Params"]


class ParamError(ValueError):
    """A stage parameter that is missing, unknown or out of range."""


class Params:
    """Typed getters over one stage's params; unknown keys are rejected up front (typos)."""

    def __init__(self, params: dict[str, Any] | None, stage: str, known: frozenset[str]) -> None:
        self.params = dict(params or {})
        self.stage = stage
        extra = sorted(set(self.params) - known)
        if extra:
            self.fail(extra[0], f"unknown parameter (known: {', '.join(sorted(known))})")

    def fail(self, key: str, msg: str) -> None:
        raise ParamError(f"stages.{self.stage}.params.{key}: {msg}")

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        if key not in self.params:
            if default is None:
                self.fail(key, "missing")
            return default
        x = self.params[key]
        if isinstance(x, bool) or not isinstance(x, int):
            self.fail(key, f"must be an integer, got {x!r}")
        if x < minimum:
            self.fail(key, f"must be >= {minimum}, got {x!r}")
        return x

    def number(self, key: str, default: float | None = None) -> float | None:
        """A positive number, or ``default`` (which may be None) when absent."""
        if key not in self.params:
            return default
        x = self.params[key]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0:
            self.fail(key, f"must be a number > 0, got {x!r}")
        return float(x)

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        x = self.params.get(key, default)
        if x not in options:
            self.fail(key, f"must be one of {', '.join(map(repr, options))}, got {x!r}")
        return x

    def levels(self, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        x = self.params.get(key, default)
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            x = [x]
        if not isinstance(x, (list, tuple)) or not x:
            self.fail(key, f"must be a non-empty list of levels, got {x!r}")
        for i, c in enumerate(x):
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 < c < 1.0:
                self.fail(f"{key}[{i}]", f"must be a confidence level in (0, 1), got {c!r}")
        return tuple(float(c) for c in x)
