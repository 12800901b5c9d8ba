"""Every setting streampipe reads, in one table, resolved in one order:

    explicit argument (command-line flag, Python keyword)  >  job file ``[pipeline]``
    >  environment variable ``STREAMPIPE_*``  >  default

A setting has a name (its ``[pipeline]`` key where a job file may set it), a type, a range, a
default and (optionally) an environment variable; all of them are listed in the README from
:data:`SETTINGS`. Values from the environment are parsed here, the same way for every setting,
and a bad one is an error naming the variable, never silently ignored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Setting", "SETTINGS", "JOB_SETTINGS", "RUN_SETTINGS", "ConfigError", "setting",
           "resolve", "resolve_run", "from_env", "parse_flag", "PYTHON_TYPES"]

INT_MAX = 2**31 - 1  # C int: MPI ranks and counts; larger values are typos
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float),
                                                   "bool": bool, "str": str}


class ConfigError(ValueError):
    """A setting with a value of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class Setting:
    """One setting: ``kind`` is "int", "float", "bool" or "str"; ``lo``/``hi`` bound numbers;
    ``job`` says whether ``[pipeline]`` may set it."""

    name: str
    kind: str
    default: Any
    doc: str
    env: str | None = None
    job: bool = True
    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = ()

    def check(self, value: Any, where: str) -> Any:
        """``value`` validated for this setting (ints stay ints; floats must be finite)."""
        want = PYTHON_TYPES[self.kind]
        if isinstance(value, bool) and self.kind != "bool" or not isinstance(value, want):
            names = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}
            raise ConfigError(f"{where}: expected {names[self.kind]}, got "
                              f"{type(value).__name__} {value!r}")
        if self.kind == "float":
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where}: must be a finite number, got {value}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where}: must be one of {', '.join(self.choices)}, got {value!r}")
        if self.lo is not None and value < self.lo:
            raise ConfigError(f"{where}: must be >= {_num(self.lo)}, got {value}")
        if self.hi is not None and value > self.hi:
            raise ConfigError(f"{where}: must be <= {_num(self.hi)}, got {value}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


SETTINGS: tuple[Setting, ...] = (
    # the pipeline's shape (job file, Python API)
    Setting("capacity", "int", 8, "records in flight into a stage, per upstream rank",
            lo=1, hi=INT_MAX),
    Setting("ordered", "bool", True, "stages receive items in source order"),
    Setting("batch", "int", 64, "most records per wire message", lo=1, hi=INT_MAX),
    Setting("checkpoint", "bool", False, "sink high-water mark for --resume"),
    # runtime knobs
    Setting("max_delay", "float", 1e-3, "longest a small record waits in a send batch",
            env="STREAMPIPE_MAX_DELAY", lo=0.0, hi=3600.0, unit="s"),
    Setting("feedback_timeout", "float", 300.0,
            "longest a stage waits for a feedback value before failing",
            env="STREAMPIPE_FEEDBACK_TIMEOUT", lo=1e-3, hi=1e7, unit="s"),
    Setting("feedback_limit", "int", 4096, "feedback values in flight per edge",
            env="STREAMPIPE_FEEDBACK_LIMIT", lo=1, hi=INT_MAX),
    Setting("checkpoint_every", "float", 1.0, "seconds between sink checkpoints",
            env="STREAMPIPE_CHECKPOINT_EVERY", lo=1e-3, hi=1e7, unit="s"),
    Setting("event_limit", "int", 200_000,
            "per-item events kept per rank in the run file (0: none; totals stay exact)",
            env="STREAMPIPE_EVENT_LIMIT", lo=0, hi=INT_MAX),
    Setting("spin_us", "float", -1.0,
            "us a wait polls before sleeping (-1: 100 when ranks <= cores, else 0)",
            env="STREAMPIPE_SPIN_US", lo=-1.0, hi=1e6, unit="us"),
    Setting("live", "bool", True, "the live view: a snapshot a second from every rank to "
            "rank 0, which writes RUN.h5.live.jsonl and /live (with a run file)",
            env="STREAMPIPE_LIVE"),
    Setting("recv", "str", "probe", "how a rank receives: probe (improbe, twice per poll where "
            "one call reports late) or irecv (a posted any-source receive)",
            env="STREAMPIPE_RECV", choices=("probe", "irecv")),
    # the launcher (command line and environment only)
    Setting("mpiexec", "str", "", "the launcher `streampipe run` starts (default: the MPI "
            "wheel's next to Python, else mpiexec on PATH)", env="STREAMPIPE_MPIEXEC",
            job=False),
    Setting("max_ranks", "int", -1, "most ranks `streampipe run` starts on this host "
            "(-1: 16 per core); flag --max-ranks", env="STREAMPIPE_MAX_RANKS", job=False,
            lo=-1, hi=INT_MAX),
    Setting("progress", "bool", False, "one progress line from the sink (set by `streampipe "
            "run` on a terminal)", env="STREAMPIPE_PROGRESS", job=False),
)
_BY_NAME = {s.name: s for s in SETTINGS}
JOB_SETTINGS = tuple(s for s in SETTINGS if s.job)
# the settings a run resolves once at its start (RunOptions fields of the same names)
RUN_SETTINGS = ("max_delay", "feedback_timeout", "feedback_limit", "checkpoint_every",
                "event_limit", "spin_us", "recv", "live")


def setting(name: str) -> Setting:
    return _BY_NAME[name]


def parse_flag(text: str, where: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off/`` (any case) -> bool."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ConfigError(f"{where}: expected 1/0, true/false, yes/no or on/off, got {text!r}")


def _parse(s: Setting, text: str) -> Any:
    where = f"{s.env}={text!r}"
    if s.kind == "bool":
        return parse_flag(text, s.env)
    if s.kind == "str":
        return s.check(text.strip(), where)
    try:
        value: Any = int(text) if s.kind == "int" else float(text)
    except ValueError:
        raise ConfigError(f"{where}: expected {'an integer' if s.kind == 'int' else 'a number'}"
                          ) from None
    return s.check(value, where)


def from_env(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The setting's value from its environment variable, or None when unset or empty."""
    s = _BY_NAME[name]
    env = os.environ if environ is None else environ
    text = env.get(s.env, "") if s.env else ""
    return _parse(s, text) if text.strip() else None


def resolve(name: str, explicit: Any = None, job: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> Any:
    """The value of setting ``name``: ``explicit`` (None: not given) > ``job[name]`` (a job
    file's ``[pipeline]``, already checked) > the environment > the default."""
    s = _BY_NAME[name]
    if explicit is not None:
        return s.check(explicit, name)
    if job is not None and name in job:
        return job[name]
    got = from_env(name, environ)
    return s.default if got is None else got


def resolve_run(explicit: Mapping[str, Any], job: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting of :data:`RUN_SETTINGS`, resolved: ``explicit[name]`` (None: not given) >
    the job file > the environment > the default."""
    return {n: resolve(n, explicit.get(n), job, environ) for n in RUN_SETTINGS}
