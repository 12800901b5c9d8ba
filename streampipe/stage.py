"""The stage API that users and the built-in pipelines write against.

A *stage* is a small class whose methods the runtime calls on the rank that
runs it: ``setup`` once, ``process`` once per item, ``finish`` once at the end
of the stream.  A :class:`Source` produces the stream, a :class:`Sink` ends it.
Plain functions become stateless stages with :func:`stage`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Context", "Stage", "Source", "Sink", "FunctionStage", "stage", "StageError"]


class StageError(RuntimeError):
    """A stage class or call that breaks the stage contract."""


@dataclass
class Context:
    """What a stage knows about where it runs.

    Attributes:
        params: the stage's ``[stages.params]`` table from the job file.
        stage: the stage's name.
        replica: index of this replica (0-based) among ``replicas``.
        replicas: how many replicas the stage has.
        rank: MPI rank in the job's world communicator.
        size: number of ranks in the job.
        device: ``"cpu"`` or ``"gpu"`` after resolution of ``device = "auto"``.
        xp: the array module for this stage: :mod:`numpy`, or :mod:`cupy` on a GPU stage.
        comm: the group sub-communicator of a group stage (``None`` for single-rank stages).
        group_rank: this rank's index inside its group (0 is the root that receives items).
        seq: the source sequence number of the item being processed (``None`` outside ``process``).
            With several sources, item ``i`` of source ``s`` (their order in the job) has seq
            ``i * n_sources + s``, so seqs order all sources' items together.
        input: for a stage joining several inputs with ``join = "merge"``, the name of the input
            stage the current item came from (``None`` otherwise).
    """

    params: dict[str, Any] = field(default_factory=dict)
    stage: str = "stage"
    replica: int = 0
    replicas: int = 1
    rank: int = 0
    size: int = 1
    device: str = "cpu"
    xp: Any = None
    comm: Any = None
    group_rank: int = 0
    seq: int | None = None
    input: str | None = None
    _runtime: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.xp is None:
            import numpy

            self.xp = numpy

    # --- feedback edges: generic item dependencies (see docs/runtime.md) ---
    def send_feedback(self, value: Any) -> None:
        """Send ``value`` back along this stage's feedback edge, keyed by the current item's seq."""
        self._need_runtime("send_feedback").send_feedback(self.seq, value)

    def feedback(self, seq: int) -> Any:
        """Wait for, and return, the feedback value sent for item ``seq``.

        ``seq`` must be an earlier item than the one being processed; the wait keeps this rank's
        communication going and fails with a clear error when the value can never come.
        """
        return self._need_runtime("feedback").wait_feedback(self.seq, seq)

    def release_feedback(self, seq: int) -> None:
        """Forget the feedback value of item ``seq`` (values are kept until released)."""
        self._need_runtime("release_feedback").release_feedback(seq)

    @contextmanager
    def io(self, nbytes: int = 0) -> Iterator[None]:
        """Account the enclosed time as I/O (read/write of ``nbytes`` bytes) in the time split."""
        rt = self._runtime
        if rt is None:
            yield
            return
        with rt.m.io(nbytes):
            yield

    def _need_runtime(self, what: str) -> Any:
        if self._runtime is None:
            raise StageError(f"ctx.{what}() needs the streampipe runtime (stage {self.stage!r})")
        return self._runtime


class Stage:
    """A stream stage: one item in, zero, one or many items out.

    Subclasses override :meth:`process`; :meth:`setup` and :meth:`finish` are optional.
    ``process`` returns one item, ``None`` to drop the item, or a generator to fan out.
    """

    ctx: Context

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        """Check ``params`` when the job is loaded, before any rank starts (optional).

        Raise ``ValueError`` (or ``TypeError``/``KeyError``) with a message naming the field,
        e.g. ``f"{where}.n: must be >= 1"``; ``where`` is ``stages.NAME.params``. The default
        accepts anything."""

    def setup(self, ctx: Context) -> None:
        """Called once on the stage's rank before the first item."""

    def process(self, item: Any) -> Any:
        """Transform one item."""
        raise NotImplementedError

    def finish(self) -> Iterable[Any] | None:
        """Called once after the last item; may return or yield items to send downstream."""
        return None

    def close(self) -> None:
        """Called once when the rank ends, also after a failure; release resources here."""

    def process_batch(self, items: list[Any]) -> list[Any]:
        """Transform several items at once (optional; override to vectorise).

        The runtime calls it instead of :meth:`process` when a subclass overrides it, with the
        items that arrived together (at most ``pipeline.batch``), and expects one result per
        item, in order, each meaning what :meth:`process` would return: a value, ``None``
        (drop) or a generator (fan-out). ``ctx.seq`` is ``None`` during the call (the items of
        one call have different seqs), so a stage that uses ``ctx.seq`` or feedback keeps to
        :meth:`process`. Each item's stamps share the call's time evenly.
        """
        return [self.process(x) for x in items]


class Source(Stage):
    """The first stage: :meth:`generate` yields the stream.

    A source that can resume (``streampipe run --resume``) overrides :meth:`seek`.
    """

    def generate(self) -> Iterable[Any]:
        """Yield the items of the stream."""
        raise NotImplementedError

    def seek(self, seq: int) -> None:
        """Start the next :meth:`generate` at item ``seq`` (for resume); the default cannot."""
        raise StageError(
            f"source {type(self).__name__} cannot resume: it does not override Source.seek(seq)"
        )

    def process(self, item: Any) -> Any:  # pragma: no cover - sources do not process
        raise StageError("a Source does not process items")


class Sink(Stage):
    """The last stage: :meth:`consume` takes each item, :meth:`result` gives the answer."""

    def consume(self, item: Any) -> None:
        """Take one item."""
        raise NotImplementedError

    def result(self) -> Any:
        """The sink's answer, returned by :func:`streampipe.run` on the sink's rank."""
        return None

    def checkpoint(self) -> Any:
        """Make everything consumed so far durable and return a picklable state (or None).

        Called with ``pipeline.checkpoint = true``; the runtime stores the state together with
        the high-water mark (every item before it has been consumed). See docs/reliability.md.
        """
        return None

    def restore(self, state: Any) -> None:
        """Continue from a state returned by :meth:`checkpoint` (``streampipe run --resume``)."""

    def process(self, item: Any) -> None:
        self.consume(item)
        return None


class FunctionStage(Stage):
    """A stateless stage made from a plain function ``f(item) -> item``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "function")
        self._wants_ctx = "ctx" in inspect.signature(fn).parameters

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx

    def process(self, item: Any) -> Any:
        if self._wants_ctx:
            return self.fn(item, ctx=self.ctx)
        return self.fn(item)

    def __call__(self, item: Any) -> Any:
        return self.fn(item)


def stage(fn: Callable[..., Any]) -> FunctionStage:
    """Make a plain function a stateless stage: ``@sp.stage def double(x): return 2 * x``.

    The function may take a keyword argument ``ctx`` to receive the :class:`Context`.
    """
    return FunctionStage(fn)


def check_stage_class(obj: Any, where: str) -> None:
    """Raise StageError when ``obj`` cannot serve as a stage (named by ``where``)."""
    if isinstance(obj, FunctionStage):
        return
    if inspect.isroutine(obj):
        raise StageError(f"{where}: {obj.__qualname__} is a plain function; decorate it with "
                         "@streampipe.stage to use it as a stage, or write a Stage subclass")
    cls = obj if isinstance(obj, type) else type(obj)
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        what = (f"module {obj.__name__!r}" if inspect.ismodule(obj) else
                f"class {cls.__qualname__}" if isinstance(obj, type) else
                f"a {cls.__qualname__} object")
        raise StageError(f"{where}: {what} is not a streampipe Stage, Source or Sink subclass")
    if issubclass(cls, Source):
        if cls.generate is Source.generate:
            raise StageError(f"{where}: source {cls.__name__} does not define generate()")
    elif issubclass(cls, Sink):
        if cls.consume is Sink.consume and cls.process is Sink.process:
            raise StageError(f"{where}: sink {cls.__name__} does not define consume()")
    elif cls.process is Stage.process:
        near = [n for n in vars(cls) if n.lower().startswith("proc") or n.lower() == "proccess"]
        hint = f" (found {near[0]!r}; did you mean 'process'?)" if near else ""
        raise StageError(f"{where}: stage {cls.__name__} does not define process(){hint}")
