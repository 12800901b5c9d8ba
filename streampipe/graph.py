"""The stage graph of a job: which stage reads which, checked before any rank starts.

A stage reads the stages named in its ``inputs`` (default: the stage before it; a Source reads
nothing). Several Sources and several Sinks are allowed; every stage is on a path from a Source
to a Sink; cycles exist only through ``feedback_to`` edges. Plain data without MPI, shared by job
validation, the plan, the simulator and the single-process runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Graph", "GraphError", "build_graph"]


class GraphError(ValueError):
    """A graph that cannot run; the message names the field (``stages[3].inputs``)."""


@dataclass(frozen=True)
class Graph:
    """Stages by index; ``inputs[i]``: the stages stage ``i`` reads, in declared order."""

    names: tuple[str, ...]
    inputs: tuple[tuple[int, ...], ...]

    @property
    def consumers(self) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in self.names]
        for i, ins in enumerate(self.inputs):
            for j in ins:
                out[j].append(i)
        return tuple(tuple(c) for c in out)

    @property
    def sources(self) -> tuple[int, ...]:
        return tuple(i for i, ins in enumerate(self.inputs) if not ins)

    @property
    def sinks(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.consumers) if not c)

    @property
    def is_chain(self) -> bool:
        """Every stage reads only the stage before it (a linear pipeline)."""
        return all(ins == ((i - 1,) if i else ()) for i, ins in enumerate(self.inputs))

    def order(self) -> tuple[int, ...]:
        """Stages in an order where every stage comes after the stages it reads."""
        done: list[int] = []
        seen: set[int] = set()

        def visit(i: int) -> None:
            if i in seen:
                return
            seen.add(i)
            for j in self.inputs[i]:
                visit(j)
            done.append(i)

        for i in range(len(self.names)):
            visit(i)
        return tuple(done)

    def source_sets(self) -> tuple[frozenset[int], ...]:
        """Per stage, the Sources its items descend from."""
        out: list[frozenset[int]] = [frozenset()] * len(self.names)
        for i in self.order():
            ins = self.inputs[i]
            out[i] = frozenset([i]) if not ins else frozenset().union(*(out[j] for j in ins))
        return tuple(out)

    def upstream(self, i: int) -> frozenset[int]:
        """Every stage stage ``i`` (transitively) reads."""
        seen: set[int] = set()
        todo = list(self.inputs[i])
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                todo.extend(self.inputs[j])
        return frozenset(seen)


def _cycle(inputs: Sequence[Sequence[int]]) -> list[int] | None:
    """A cycle through the inputs (stage indices, first repeated at the end), or None."""
    state = [0] * len(inputs)  # 0 new, 1 on the path, 2 done
    path: list[int] = []

    def visit(i: int) -> list[int] | None:
        state[i] = 1
        path.append(i)
        for j in inputs[i]:
            if state[j] == 1:
                return path[path.index(j):] + [j]
            if state[j] == 0 and (found := visit(j)) is not None:
                return found
        path.pop()
        state[i] = 2
        return None

    for i in range(len(inputs)):
        if state[i] == 0 and (found := visit(i)) is not None:
            return found
    return None


def build_graph(names: Sequence[str], declared: Sequence[Sequence[str] | None],
                is_source: Sequence[bool]) -> Graph:
    """The graph of stages ``names`` whose ``inputs`` are ``declared`` (None: the stage before
    it, or nothing for a Source). Raises GraphError naming the field."""
    index = {n: i for i, n in enumerate(names)}
    inputs: list[tuple[int, ...]] = []
    for i, (decl, src) in enumerate(zip(declared, is_source, strict=True)):
        where = f"stages[{i}].inputs"
        if decl is None:
            inputs.append(() if src or i == 0 else (i - 1,))
            continue
        got = []
        for name in decl:
            if name not in index:
                raise GraphError(f"{where}: no stage named {name!r} (stages: {', '.join(names)})")
            if index[name] in got:
                raise GraphError(f"{where}: {name!r} is named twice")
            got.append(index[name])
        inputs.append(tuple(got))
    cyc = _cycle(inputs)
    if cyc is not None:
        # the cycle in the direction items flow: a -> b means b reads a
        chain = " -> ".join(names[i] for i in reversed(cyc))
        raise GraphError(f"stages[{cyc[0]}].inputs: the stages form a cycle ({chain}); only "
                         "feedback_to may point back")
    return Graph(tuple(names), tuple(inputs))
