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
from .graph import Graph, GraphError, build_graph
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
    inputs: list[str] | None = None  # the stages it reads (None: the stage before it)
    join: str | None = None  # several inputs: "merge" (default) or "zip"
    route: str = "balance"  # how items reach its replicas: "balance" or "key"
    key: Any = None  # route = "key": "module:function" (or a function, in Python)

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
    graph: Graph | None = field(default=None, repr=False, compare=False)  # set by validate()

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
    "feedback_to": str, "timeout": (int, float), "params": dict, "inputs": list, "join": str,
    "route": str, "key": str,
}
JOINS = ("merge", "zip")
ROUTES = ("balance", "key")


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


def _names(value: list[Any], path: str) -> list[str]:
    if not all(isinstance(v, str) for v in value):
        raise JobError(f"{path}: expected a list of stage names, got {value!r}")
    return list(value)


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
            inputs=_names(st["inputs"], f"{where}.inputs") if "inputs" in st else None,
            join=st.get("join"), route=st.get("route", "balance"), key=st.get("key"),
        ))
    spec = JobSpec(
        name=name, stages=stages, text=text, path=path,
        **{k: knobs.get(k, config.setting(k).default) for k in SHAPE},
        settings={k: v for k, v in knobs.items() if k not in SHAPE},
    )
    validate(spec, check_imports=check_imports)
    return spec


def validate(spec: JobSpec, check_imports: bool = True) -> None:
    """Structural checks shared by job files and the Python API; sets ``spec.graph``."""
    if len(spec.stages) < 2:
        raise JobError("stages: a job needs at least two stages (a source and a sink)")
    if spec.ranks > INT_MAX:
        raise JobError(f"stages: the job needs {spec.ranks} ranks, more than MPI can number")
    classes: list[type | None] = []
    for i, st in enumerate(spec.stages):
        where = f"stages[{i}]"
        if not check_imports:
            classes.append(None)
            continue
        obj = st.obj if st.obj is not None else resolve_uses(st.uses, f"{where}.uses",
                                                             base=st.base or spec.path)
        try:
            check_stage_class(obj, f"{where}.uses ({st.name})" if st.obj is None
                              else f"{where} ({st.name})")
        except StageError as exc:
            raise JobError(str(exc)) from None
        classes.append(_stage_class(obj))
        _check_params(obj, st)
    is_source = [(st.inputs == []) if cls is None else issubclass(cls, Source)
                 for st, cls in zip(spec.stages, classes, strict=True)]
    try:
        graph = build_graph([s.name for s in spec.stages], [s.inputs for s in spec.stages],
                            is_source)
    except GraphError as exc:
        raise JobError(str(exc)) from None
    _check_roles(spec, graph, classes)
    _check_edges(spec, graph)
    spec.graph = graph
    if spec.checkpoint:
        _check_checkpoint(spec, graph, classes)
    for i in graph.sources:
        if spec.ordered and spec.stages[i].replicas > 1:
            raise JobError(f"stages[{i}].replicas: a replicated source has no single order; "
                           "set pipeline.ordered = false or use one source replica")


def _check_roles(spec: JobSpec, graph: Graph, classes: list[type | None]) -> None:
    """Sources read nothing, Sinks feed nothing, every other stage does both. What stages read
    is checked first: a stage that reads nothing also leaves the stage before it without a
    reader, and that is the consequence, not the cause."""
    n = len(spec.stages)
    consumers = graph.consumers
    named = ["a function" if cls is FunctionStage else getattr(cls, "__name__", "?")
             for cls in classes]
    for i, (st, cls) in enumerate(zip(spec.stages, classes, strict=True)):
        if cls is None:
            continue
        where, reads = f"stages[{i}]", graph.inputs[i]
        if issubclass(cls, Source) and reads:
            raise JobError(f"{where}.inputs: {st.name!r} is a Source ({named[i]}): it reads "
                           "nothing")
        if not reads and not issubclass(cls, Source):
            if i == 0:
                raise JobError(f"{where}.uses: the first stage must be a streampipe Source, "
                               f"got {named[i]}")
            raise JobError(f"{where}.inputs: {st.name!r} ({named[i]}) reads nothing; only a "
                           "Source starts the graph")
    for i, (st, cls) in enumerate(zip(spec.stages, classes, strict=True)):
        where, feeds = f"stages[{i}]", consumers[i]
        if cls is not None and issubclass(cls, Sink) and feeds:
            j = feeds[0]
            raise JobError(f"stages[{j}].inputs: {st.name!r} is a Sink ({named[i]}) and cannot "
                           f"feed {spec.stages[j].name!r}")
        if cls is not None and not feeds and not issubclass(cls, Sink):
            if i == n - 1:
                raise JobError(f"{where}.uses: the last stage must be a streampipe Sink, got "
                               f"{named[i]}")
            raise JobError(f"{where}: {st.name!r} ({named[i]}) feeds no stage; only a Sink ends "
                           "the graph (name it in a later stage's inputs)")
        if st.group > 1 and (not graph.inputs[i] or not feeds):
            raise JobError(f"{where}.group: sources and sinks run on one rank per replica")


def _check_edges(spec: JobSpec, graph: Graph) -> None:
    """Joins, routes and feedback edges."""
    names = [s.name for s in spec.stages]
    sources = graph.source_sets()
    fed: dict[str, str] = {}
    for i, st in enumerate(spec.stages):
        where = f"stages[{i}]"
        reads = graph.inputs[i]
        if st.join is not None:
            if st.join not in JOINS:
                raise JobError(f"{where}.join: must be one of {', '.join(JOINS)}, got "
                               f"{st.join!r}")
            if len(reads) < 2:
                raise JobError(f"{where}.join: {st.name!r} has one input; join needs several")
        if st.join == "zip":
            if not spec.ordered:
                raise JobError(f"{where}.join: zip needs pipeline.ordered = true (it pairs the "
                               "items of one source item, in order)")
            origin = [sources[j] for j in reads]
            if any(len(o) != 1 for o in origin) or len(set(origin)) != 1:
                got = ", ".join(f"{names[j]!r} from {'+'.join(names[s] for s in sorted(o))}"
                                for j, o in zip(reads, origin, strict=True))
                raise JobError(f"{where}.join: zip pairs the items of one source item, so its "
                               f"inputs must come from the same single source; got {got}")
        if st.route not in ROUTES:
            raise JobError(f"{where}.route: must be one of {', '.join(ROUTES)}, got {st.route!r}")
        if st.route == "key":
            if st.join == "zip":
                raise JobError(f'{where}.route: a zip stage routes by source item (the records '
                               'of one source item must meet on one replica); route = "key" '
                               'cannot be combined with join = "zip"')
            if st.key is None:
                raise JobError(f'{where}.key: route = "key" needs key = "module:function"')
            if not callable(st.key):
                resolve_uses(st.key, f"{where}.key", base=spec.path)
        elif st.key is not None:
            raise JobError(f'{where}.key: only used with route = "key"')
        if st.feedback_to is not None:
            if st.feedback_to not in names:
                raise JobError(f"{where}.feedback_to: no stage named {st.feedback_to!r}")
            if names.index(st.feedback_to) not in graph.upstream(i):
                raise JobError(f"{where}.feedback_to: must name an earlier stage (one whose "
                               f"items reach {st.name!r}), {st.feedback_to!r} is not")
            if st.feedback_to in fed:
                # one feedback edge per consumer: ctx.feedback(seq) could not say whose value
                raise JobError(f"{where}.feedback_to: stage {fed[st.feedback_to]!r} already feeds "
                               f"back to {st.feedback_to!r}; a stage takes feedback from one "
                               "stage only")
            fed[st.feedback_to] = st.name


def _check_params(obj: Any, st: StageSpec) -> None:
    """The stage's own parameter check (``Stage.check_params``), as a one-line JobError."""
    check = getattr(_stage_class(obj), "check_params", None)
    if check is None:
        return
    where = f"stages.{st.name}.params"
    try:
        check(dict(st.params), where)
    except Exception as exc:  # noqa: BLE001 - any failure of the check is about the params
        msg = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        if not isinstance(exc, ValueError):
            msg = f"{type(exc).__name__}: {msg}"  # a comparison of the wrong types, say
        raise JobError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _stage_class(obj: Any) -> type:
    return FunctionStage if isinstance(obj, FunctionStage) else (
        obj if isinstance(obj, type) else type(obj))


def _check_checkpoint(spec: JobSpec, graph: Graph, classes: list[type | None]) -> None:
    """Each sink's high-water mark is a position in the ordered stream it gets (the sources'
    items interleave by seq). A graph is fine: a sink's ordered merge knows when every branch's
    records of a source item have arrived (docs/graphs.md)."""
    if not spec.ordered:
        raise JobError("pipeline.checkpoint: needs pipeline.ordered = true (a sink's high-water "
                       "mark is a position in the ordered stream)")
    for i in graph.sinks:
        if spec.stages[i].replicas > 1:
            raise JobError(f"stages[{i}].replicas: pipeline.checkpoint needs one replica of "
                           f"sink {spec.stages[i].name!r} (its high-water mark is a position in "
                           "one ordered stream)")
    for i, cls in enumerate(classes):
        if cls is not None:
            _check_resumable(cls, i in graph.sources, i in graph.sinks, f"stages[{i}].uses")


def _check_resumable(obj: Any, source: bool, sink: bool, where: str) -> None:
    """``pipeline.checkpoint`` promises an exact resume: the source must seek, and the sink must
    save and restore its state, or a resumed run silently loses what the sink had consumed."""
    cls = _stage_class(obj)
    if source and cls.seek is Source.seek:
        raise JobError(f"pipeline.checkpoint: source {cls.__name__} cannot resume: it does not "
                       f"override Source.seek(seq) ({where})")
    if sink:
        missing = [m for m in ("checkpoint", "restore") if getattr(cls, m) is getattr(Sink, m)]
        if missing:
            raise JobError(f"pipeline.checkpoint: sink {cls.__name__} does not override "
                           f"{' and '.join(f'Sink.{m}()' for m in missing)}, so a resumed run "
                           f"would lose what it consumed before the failure ({where})")


def job_path(name: str, base: str | None) -> Path:
    """A file named in a job: as given when it exists, else relative to the job file's folder
    (what :func:`resolve_uses` does for ``path/to/file.py``; data files keep the working
    directory first, as they always did)."""
    p = Path(name)
    if not p.is_absolute() and base is not None and not p.exists():
        p = Path(base).parent / p
    return p


def _import_module(target: str, base: str | None) -> Any:
    """Import ``target`` from the working directory or ``sys.path``; failing those, from the job
    file's folder (so ``streampipe run other/dir/job.toml`` finds the module next to the job, as
    it finds ``file.py:Class``). The job's folder comes last: it never shadows an installed
    module."""
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        top = target.partition(".")[0]
        folder = str(Path(base).resolve().parent) if base is not None else None
        if exc.name != top or folder is None or folder in sys.path:
            raise
        here = Path(folder)
        if not ((here / f"{top}.py").exists() or (here / top).is_dir()):
            raise
        sys.path.append(folder)
        return importlib.import_module(target)


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
            module = _import_module(target, base)
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
