"""The training links on the stream transport: the one module that touches the engine.

Everything training needs from :mod:`streampipe.transport`, :mod:`streampipe.channel` and
:mod:`streampipe.metrics` goes through :class:`Wire`, so that engine changes are absorbed here.

Every (sender, receiver, kind) pair that ever carries data is a *link* with its own edge id, an
:class:`~streampipe.channel.OutPort` on the sender and an :class:`~streampipe.channel.InPort`
on the receiver: the same credit-bounded, sleeping-poll transport as stream pipelines, so a rank
that waits costs no CPU. Keys ``(step, stage, microbatch)`` tell the messages of one link apart.
A link's capacity is the most one minibatch step puts on it (a stage can only start the next
step after its own optimizer step, which needs every backward of this step), so credits never
limit a valid schedule and never deadlock it. Every message is recorded by kind (activation,
gradient, label, input, weights) and peer on both ends: the wire audit.

Messages to rank 0 outside the links (checkpoint states, final results) are *control* messages:
:meth:`Wire.to_root` and :meth:`Wire.on_root`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from .. import metrics as M
from ..channel import ITEM, InPort, OutPort
from ..transport import CONTROL, AbortRequested, Transport

__all__ = ["Wire", "WIRE_KINDS", "AbortRequested", "BUSY", "STARVED", "BLOCKED", "OTHER",
           "STATES", "STATS_EDGE", "CKPT_EDGE"]

WIRE_KINDS = ("activation", "gradient", "label", "input", "weights")
EDGE_BASE = 1000  # link i uses edge id EDGE_BASE + i (stream jobs use small ids)
STATS_EDGE = -21  # rank -> rank 0 at the end: measurements and final weights
CKPT_EDGE = -22  # rank -> rank 0 after each epoch: weights for the checkpoint
BUSY, STARVED, BLOCKED, OTHER = M.BUSY, M.STARVED, M.BLOCKED, M.OTHER
STATES = M.STATES


def _nbytes(value: Any) -> int:
    return int(getattr(value, "nbytes", 0))


class Wire:
    """This rank's ends of the training links, its time recorder and the message audit."""

    def __init__(self, comm: Any) -> None:
        self.rec = M.Recorder()
        self.t = Transport(comm, on_transfer=self.rec.add_transfer)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.out: dict[tuple[int, str], OutPort] = {}
        self.inp: dict[tuple[int, str], InPort] = {}
        self.box: dict[tuple[int, str], dict[Hashable, Any]] = {}
        # audit: direction -> kind -> peer -> [messages, bytes]
        self.audit: dict[str, dict[str, dict[int, list[int]]]] = {"sent": {}, "received": {}}

    def open(self, links: list[tuple[int, int, str]], capacity: int) -> None:
        """Create this rank's ports; every rank passes the same ``links`` (edge ids = index)."""
        me = self.rank
        for i, (src, dst, kind) in enumerate(links):
            edge = EDGE_BASE + i
            if src == me:
                self.out[(dst, kind)] = OutPort(self.t, edge, (dst,), capacity, 1,
                                                self.rec.edge(f"{kind}->{dst}"))
            elif dst == me:
                self.inp[(src, kind)] = InPort(self.t, edge, (src,), capacity, merge=False,
                                               start_seq=0, on_arrival=lambda n, now: None)
                self.box[(src, kind)] = {}

    def join_node(self) -> tuple[int, int]:
        """(node-local rank, ranks on this node); collective. Also tunes how long waits poll
        before sleeping, as for stream ranks."""
        return self.t.join_node()

    # ---------------------------------------------------------------- time
    @property
    def t0(self) -> float:
        return self.rec.t0

    def enter(self, state: int) -> int:
        """Charge the time from now on to ``state``; returns the previous state."""
        return self.rec.enter(state)

    def totals(self) -> list[float]:
        return list(self.rec.totals)

    def dump(self) -> dict[str, Any]:
        """Close the recorder and return its per-rank measurements."""
        self.rec.close()
        return self.rec.dump()

    # ---------------------------------------------------------------- links
    def note(self, direction: str, kind: str, peer: int, nbytes: int) -> None:
        """Record one message in the audit (also used for weights sent outside the links)."""
        row = self.audit[direction].setdefault(kind, {}).setdefault(peer, [0, 0])
        row[0] += 1
        row[1] += nbytes

    def wait(self, until: Callable[[], bool], state: int, what: str) -> None:
        """Return owed credits, then poll (sleeping) until ``until()``; time goes to ``state``."""
        for port in self.inp.values():
            port.flush_credits()
        prev = self.rec.enter(state)
        try:
            self.t.wait(until, what=what)
        finally:
            self.rec.enter(prev)

    def send(self, dst: int, kind: str, key: Hashable, value: Any) -> None:
        port = self.out[(dst, kind)]
        if not port.has_credit():
            self.wait(port.has_credit, M.BLOCKED, f"waiting for credit to send {kind} to {dst}")
        port.put((ITEM, key, value))
        self.note("sent", kind, dst, _nbytes(value))

    def _drain(self, src: int, kind: str) -> None:
        port, box = self.inp[(src, kind)], self.box[(src, kind)]
        while (got := port.next()) is not None:
            _, (_, key, value) = got
            box[key] = value
            self.note("received", kind, src, _nbytes(value))

    def recv(self, src: int, kind: str, key: Hashable) -> Any:
        """The value sent as ``key`` by ``src`` on its ``kind`` link (waits for it)."""
        box = self.box[(src, kind)]

        def ready() -> bool:
            self._drain(src, kind)
            return key in box

        if not ready():
            self.wait(ready, M.STARVED, f"waiting for {kind} {key} from rank {src}")
        return box.pop(key)

    def close(self) -> None:
        """End every link: EOS out, wait for the receivers' closing acks and our inputs' ends."""
        for port in self.out.values():
            port.put_eos()

        def done() -> bool:
            for (src, kind) in self.inp:
                self._drain(src, kind)
            return (all(p.done for p in self.out.values())
                    and all(p.exhausted for p in self.inp.values()))

        self.wait(done, M.OTHER, "waiting for the training links to close")
        self.wait(lambda: not self.t.sends_pending, M.OTHER, "waiting for sends")
        left = {k: list(b) for k, b in self.box.items() if b}
        if left:
            raise RuntimeError(f"rank {self.rank}: messages never consumed: {left}")

    # ---------------------------------------------------------------- rank 0
    def on_root(self, edge: int, handler: Callable[[int, Any], None]) -> None:
        """Call ``handler(source_rank, payload)`` for each control message on ``edge``."""
        self.t.handlers[edge] = lambda src, kind, payload: handler(src, payload)

    def to_root(self, edge: int, payload: Any, nbytes: int = 0) -> None:
        """Send ``payload`` to rank 0's ``edge`` handler (rank 0 calls its handler directly)."""
        if self.rank == 0:
            self.t.handlers[edge](0, CONTROL, payload)
        else:
            self.t.send(0, CONTROL, edge, payload)
            if nbytes:
                self.note("sent", "weights", 0, nbytes)

    def drain_sends(self) -> None:
        self.t.drain_sends()

    def abort_others(self, message: str) -> None:
        """Tell every other rank to stop (they raise :class:`AbortRequested`)."""
        self.t.abort_others(message, self.size)

    @property
    def bytes_sent(self) -> int:
        return self.t.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.t.bytes_received

    def poll_until(self, until: Callable[[], bool], what: str) -> None:
        """Wait for ``until()`` (e.g. a collective's completion) while serving the transport,
        so an abort from another rank still arrives; the time counts as blocked."""
        self.wait(until, M.BLOCKED, what)
