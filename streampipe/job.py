"""Job files: TOML text -> a validated :class:`JobSpec` (plain dataclasses).

Every error names the field it is about (``stages[2].replicas``), and is raised before any rank
starts work. ``--set`` overrides are applied to the parsed table before validation, so they are
checked exactly like the file.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from ._toml import tomllib
from .stage import FunctionStage, Sink, Source, StageError, check_stage_class

__all__ = ["JobError", "StageSpec", "JobSpec", "load_job", "parse_job", "resolve_uses",
           "apply_overrides", "job_path"]

DEVICES = ("cpu", "gpu", "auto")


class JobError(ValueError):
    """A job file, override or argument that is not valid; the message names the field."""


@dataclass
class StageSpec:
    """One stage of a job.

    ``obj`` holds a stage class, instance or function when the pipeline is built in Python;
    job files give ``uses`` instead.
    """

    name: str
    uses: str = ""
    replicas: int = 1
    group: int = 1
    capacity: int | None = None
    device: str = "cpu"
    feedback_to: str | None = None
    timeout: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    obj: Any = None
    base: str | None = None  # the job file a relative ``path/to/file.py:Class`` is relative to

    @property
    def ranks(self) -> int:
        return self.replicas * self.group


@dataclass
class JobSpec:
    """A whole pipeline: stages in order plus pipeline-wide settings."""

    name: str
    stages: list[StageSpec]
    capacity: int = 8
    ordered: bool = True
    batch: int = 64
    checkpoint: bool = False
    text: str = ""
    path: str | None = None
    train: dict[str, Any] | None = None  # a [train] table: pipelined training (streampipe.train)
    settings: dict[str, Any] = field(default_factory=dict)  # runtime knobs the job file sets

    @property
    def ranks(self) -> int:
        """Number of MPI ranks the job needs: sum over stages of replicas x group size."""
        return sum(s.ranks for s in self.stages)

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        names = ", ".join(s.name for s in self.stages)
        raise JobError(f"no stage named {name!r} (stages: {names})")


SHAPE = ("capacity", "ordered", "batch", "checkpoint")  # JobSpec fields; the rest: settings
PIPELINE_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, **{s.name: config.PYTHON_TYPES[s.kind] for s in config.JOB_SETTINGS},
}
STAGE_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "uses": str, "replicas": int, "group": int, "capacity": int, "device": str,
    "feedback_to": str, "timeout": (int, float), "params": dict,
}


def _typename(t: type | tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "table"}
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in ts)


def _check_keys(table: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in allowed:
            raise JobError(f"{path}: unknown key (allowed: {', '.join(allowed)})")
        want = allowed[key]
        # bool is an int in Python; a boolean where a number is expected is a mistake
        if isinstance(value, bool) and want is not bool:
            raise JobError(f"{path}: expected {_typename(want)}, got boolean {value!r}")
        if not isinstance(value, want):
            raise JobError(
                f"{path}: expected {_typename(want)}, got {type(value).__name__} {value!r}")


# Integers end up as MPI ranks and counts (C int) and as HDF5 attributes (int64): anything
# beyond a C int is a typo, refused here rather than after the whole run when the file is written.
INT_MAX = config.INT_MAX
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # stage names: --set paths, HDF5 group names
JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # part of the default run-file name


def _positive(value: int, path: str) -> int:
    if value < 1:
        raise JobError(f"{path}: must be >= 1, got {value}")
    if value > INT_MAX:
        raise JobError(f"{path}: must be <= {INT_MAX}, got {value}")
    return value


def _name(value: str, path: str, pattern: re.Pattern[str] = NAME) -> str:
    if not pattern.fullmatch(value):
        raise JobError(f"{path}: must be letters, digits, '_' or '-'"
                       + (" or '.'" if pattern is JOB_NAME else "")
                       + f" (not starting with '-' or '.'), got {value!r}")
    return value


def _seconds(value: float | None, path: str) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise JobError(f"{path}: must be a finite number > 0 (seconds), got {value}")
    return float(value)


def _pipeline_settings(pipe: dict[str, Any]) -> dict[str, Any]:
    try:
        return {k: config.setting(k).check(v, f"pipeline.{k}") for k, v in pipe.items()
                if k != "name"}
    except config.ConfigError as exc:
        raise JobError(str(exc)) from None


def parse_job(table: dict[str, Any], text: str = "", path: str | None = None,
              check_imports: bool = True) -> JobSpec:
    """Validate a parsed TOML table into a JobSpec (``check_imports``: import every ``uses``)."""
    _check_keys(table, {"pipeline": dict, "stages": list, "train": dict}, "")
    pipe = table.get("pipeline", {})
    _check_keys(pipe, PIPELINE_KEYS, "pipeline")
    knobs = _pipeline_settings(pipe)
    name = _name(pipe.get("name", Path(path).stem if path else "job"), "pipeline.name", JOB_NAME)
    if "train" in table:  # a training job has no stream stages; streampipe.train validates it
        if "stages" in table:
            raise JobError("stages: a job with a [train] table has no [[stages]]")
        return JobSpec(name=name, stages=[], text=text, path=path, train=table["train"])
    raw_stages = table.get("stages")
    if not raw_stages:
        raise JobError("stages: a job needs at least two [[stages]] (a source and a sink)")
    stages: list[StageSpec] = []
    seen: set[str] = set()
    for i, st in enumerate(raw_stages):
        where = f"stages[{i}]"
        if not isinstance(st, dict):
            raise JobError(f"{where}: expected a table")
        _check_keys(st, STAGE_KEYS, where)
        if "uses" not in st and "obj" not in st:
            raise JobError(f"{where}.uses: missing (module:Class or path/to/file.py:Class)")
        sname = _name(st.get("name", f"stage{i}"), f"{where}.name")
        if sname in seen:
            raise JobError(f"{where}.name: duplicate stage name {sname!r}")
        seen.add(sname)
        device = st.get("device", "cpu")
        if device not in DEVICES:
            raise JobError(f"{where}.device: must be one of {', '.join(DEVICES)}, got {device!r}")
        stages.append(StageSpec(
            name=sname, uses=st["uses"],
            replicas=_positive(st.get("replicas", 1), f"{where}.replicas"),
            group=_positive(st.get("group", 1), f"{where}.group"),
            capacity=_positive(st["capacity"], f"{where}.capacity") if "capacity" in st else None,
            device=device, feedback_to=st.get("feedback_to"),
            timeout=_seconds(st.get("timeout"), f"{where}.timeout"),
            params=st.get("params", {}), base=path,
        ))
    spec = JobSpec(
        name=name, stages=stages, text=text, path=path,
        **{k: knobs.get(k, config.setting(k).default) for k in SHAPE},
        settings={k: v for k, v in knobs.items() if k not in SHAPE},
    )
    validate(spec, check_imports=check_imports)
    return spec


def validate(spec: JobSpec, check_imports: bool = True) -> None:
    """Structural checks shared by job files and the Python API; every failure is a JobError."""
    if len(spec.stages) < 2:
        raise JobError("stages: a job needs at least two stages (a source and a sink)")
    names = [s.name for s in spec.stages]
    if spec.ranks > INT_MAX:
        raise JobError(f"stages: the job needs {spec.ranks} ranks, more than MPI can number")
    if spec.checkpoint and (not spec.ordered or spec.stages[-1].replicas > 1):
        raise JobError("pipeline.checkpoint: needs pipeline.ordered = true and one sink replica "
                       "(the high-water mark is a position in the ordered stream)")
    fed: dict[str, str] = {}
    for i, st in enumerate(spec.stages):
        where = f"stages[{i}]"
        if st.feedback_to is not None:
            if st.feedback_to not in names:
                raise JobError(f"{where}.feedback_to: no stage named {st.feedback_to!r}")
            if names.index(st.feedback_to) >= i:
                raise JobError(f"{where}.feedback_to: must name an earlier stage, "
                               f"{st.feedback_to!r} is not before {st.name!r}")
            if st.feedback_to in fed:
                # one feedback edge per consumer: ctx.feedback(seq) could not say whose value
                raise JobError(f"{where}.feedback_to: stage {fed[st.feedback_to]!r} already feeds "
                               f"back to {st.feedback_to!r}; a stage takes feedback from one "
                               "stage only")
            fed[st.feedback_to] = st.name
        if st.group > 1 and i in (0, len(spec.stages) - 1):
            raise JobError(f"{where}.group: sources and sinks run on one rank per replica")
        if check_imports:
            obj = st.obj
            if obj is None:
                obj = resolve_uses(st.uses, f"{where}.uses", base=st.base or spec.path)
            try:
                check_stage_class(obj, f"{where} ({st.name})")
            except StageError as exc:
                raise JobError(str(exc)) from None
            _check_role(obj, i, len(spec.stages), where)
            _check_params(obj, st)
            if spec.checkpoint:
                _check_resumable(obj, i, len(spec.stages), where)
    if spec.ordered and spec.stages[0].replicas > 1:
        raise JobError("stages[0].replicas: a replicated source has no single order; "
                       "set pipeline.ordered = false or use one source replica")


def _check_params(obj: Any, st: StageSpec) -> None:
    """The stage's own parameter check (``Stage.check_params``), as a one-line JobError."""
    check = getattr(_stage_class(obj), "check_params", None)
    if check is None:
        return
    try:
        check(dict(st.params), f"stages.{st.name}.params")
    except (ValueError, TypeError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise JobError(str(msg)) from None


def _stage_class(obj: Any) -> type:
    return FunctionStage if isinstance(obj, FunctionStage) else (
        obj if isinstance(obj, type) else type(obj))


def _check_role(obj: Any, i: int, n: int, where: str) -> None:
    cls = _stage_class(obj)
    if i == 0 and not issubclass(cls, Source):
        raise JobError(
            f"{where}.uses: the first stage must be a streampipe Source, got {cls.__name__}")
    if i > 0 and issubclass(cls, Source):
        raise JobError(f"{where}.uses: only the first stage may be a Source ({cls.__name__})")
    if i == n - 1 and not issubclass(cls, Sink):
        raise JobError(
            f"{where}.uses: the last stage must be a streampipe Sink, got {cls.__name__}")


def _check_resumable(obj: Any, i: int, n: int, where: str) -> None:
    """``pipeline.checkpoint`` promises an exact resume: the source must seek, and the sink must
    save and restore its state, or a resumed run silently loses what the sink had consumed."""
    cls = _stage_class(obj)
    if i == 0 and cls.seek is Source.seek:
        raise JobError(f"pipeline.checkpoint: source {cls.__name__} cannot resume: it does not "
                       f"override Source.seek(seq) ({where}.uses)")
    if i == n - 1:
        missing = [m for m in ("checkpoint", "restore") if getattr(cls, m) is getattr(Sink, m)]
        if missing:
            raise JobError(f"pipeline.checkpoint: sink {cls.__name__} does not override "
                           f"{' and '.join(f'Sink.{m}()' for m in missing)}, so a resumed run "
                           f"would lose what it consumed before the failure ({where}.uses)")


def job_path(name: str, base: str | None) -> Path:
    """A file named in a job: as given when it exists, else relative to the job file's folder
    (what :func:`resolve_uses` does for ``path/to/file.py``; data files keep the working
    directory first, as they always did)."""
    p = Path(name)
    if not p.is_absolute() and base is not None and not p.exists():
        p = Path(base).parent / p
    return p


def resolve_uses(uses: str, where: str = "uses", base: str | None = None) -> Any:
    """Import ``module:Attr`` or ``path/to/file.py:Attr`` (relative to the job file's folder)."""
    if ":" not in uses:
        raise JobError(f"{where}: expected 'module:Class' or 'path/to/file.py:Class', got {uses!r}")
    target, _, attr = uses.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_absolute() and base is not None:
                path = Path(base).parent / path  # as documented, whatever the working directory
            if not path.exists():
                raise JobError(f"{where}: file {target!r} not found")
            modname = f"_streampipe_user_{path.stem}_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(modname)
            if module is None:
                spec = importlib.util.spec_from_file_location(modname, path)
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module
                spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(target)
    except JobError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's field
        raise JobError(f"{where}: cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise JobError(f"{where}: module {target!r} has no attribute {attr!r}") from None


def instantiate(spec: StageSpec, where: str = "") -> Any:
    """Build the stage object of ``spec`` (a new instance per rank)."""
    obj = spec.obj if spec.obj is not None else resolve_uses(spec.uses, f"{where}.uses",
                                                             base=spec.base)
    if isinstance(obj, type):
        try:
            return obj()
        except TypeError as exc:
            raise StageError(f"{where}: stage class {obj.__name__} must be constructible without "
                             f"arguments (use setup(ctx) and params): {exc}") from exc
    return copy.copy(obj) if not isinstance(obj, FunctionStage) else obj


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(table: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b=v`` overrides to a parsed job table (returns a new table).

    Paths: ``pipeline.capacity``, ``stages.NAME.field``, ``stages.NAME.params.key`` or
    ``stages[2].replicas``. Values are TOML literals (``4``, ``true``, ``"x"``); anything else is
    taken as a string.
    """
    table = copy.deepcopy(table)
    for item in overrides:
        if "=" not in item:
            raise JobError(f"--set {item!r}: expected key=value")
        key, _, raw = item.partition("=")
        parts = key.strip().replace("[", ".").replace("]", "").split(".")
        node: Any = table
        path = ""
        if parts[0] == "stages" and len(parts) >= 3:
            stages = table.get("stages", [])
            sel = parts[1]
            idx = int(sel) if sel.isdigit() else next(
                (i for i, s in enumerate(stages) if s.get("name") == sel), None)
            if idx is None or not 0 <= idx < len(stages):
                raise JobError(f"--set {key}: no stage {sel!r}")
            node, parts, path = stages[idx], parts[2:], f"stages[{idx}]"
        for p in parts[:-1]:
            path = f"{path}.{p}" if path else p
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise JobError(f"--set {key}: {path} is not a table")
            node = nxt
        node[parts[-1]] = _parse_value(raw.strip())
    return table


def load_job(path: str | Path, overrides: list[str] | None = None,
             check_imports: bool = True) -> JobSpec:
    """Read, override and validate a TOML job file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise JobError(f"job file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"job file {str(p)!r}: not valid TOML: {exc}") from None
    if overrides:
        table = apply_overrides(table, overrides)
    return parse_job(table, text=text, path=str(p), check_imports=check_imports)
