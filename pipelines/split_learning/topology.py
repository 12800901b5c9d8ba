"""Who runs what in split learning: the :class:`SplitLearning` layout of a ``[train]`` job.

The model is cut into ``S`` pipeline stages. Stage 0 (the bottom, next to the raw data) always
runs on the client whose turn it is; with ``u_shape`` the last stage (the head, next to the
labels) does too, so labels never leave the client. The stages in between run on server ranks,
one stage per rank (the server side may itself be a pipeline, e.g. a chain of hospitals). Ranks:
clients ``0..C-1``, then the server stages in order. Each client's turn is one *path* of
:class:`streampipe.train.Layout`: its stage 0 (and head) on the client's rank.

With ``schedule = "interleaved"`` (Megatron's interleaved 1F1B, ``virtual = V`` model chunks per
rank) the pipeline has ``P = S / V`` positions and stage ``s`` runs at position ``s % P``:
position 0 is the active client (stages ``0, P, 2P, ...``, one copy per client like the bottom),
positions ``1..P-1`` are the server ranks. Activations of stage ``s = kP + P - 1`` wrap around
from the last server rank back to the client.

The per-rank schedules, links and merge of a client's two stages (U-shape) are the framework's
(:class:`streampipe.train.layout.Layout`); this class only says where stages live, what the
stage copies are called, where the data comes from, the round-robin step order and the privacy
audit at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from streampipe.train import Layout
from streampipe.train.data import Dataset, minibatch_order

from .data import load_digits, shard, train_test_split

__all__ = ["SplitLearning", "DIGITS_SOURCES", "round_robin"]

DIGITS_SOURCES = ("auto", "sklearn", "synthetic")


def round_robin(sizes: list[int], minibatch: int, epoch: int) -> Iterator[tuple[int, int]]:
    """``(client, j)`` for every step of an epoch: clients take turns, round ``j`` by round."""
    counts = [n // minibatch for n in sizes]
    for j in range(max(counts, default=0)):
        for c, k in enumerate(counts):
            if j < k:
                yield c, j


class SplitLearning(Layout):
    """Clients holding data and the bottom (and head) stages, server ranks the middle.

    Extra ``[train]`` keys: ``clients`` (1), ``u_shape`` (false), ``audit_samples`` (300),
    ``rank_names`` (one name per rank for the report and audit, e.g. hospitals; default
    ``client{c}``, ``server{i}``);
    ``[train.data]``: ``source`` may also be ``"auto"`` (default), ``"sklearn"`` or
    ``"synthetic"`` (the 8x8 digits), ``test_fraction`` (0.25, when the source has no test
    split), ``shard`` ("iid" or "label_skew"), ``alpha`` (0.5), ``limit`` (0 = all).
    """

    KEYS = {"clients": int, "u_shape": bool, "audit_samples": int, "rank_names": list}
    DATA_KEYS = {"test_fraction": float, "shard": str, "alpha": float, "limit": int}
    title = "split learning"

    def __init__(self, cfg: Any) -> None:
        self.clients = int(cfg.extra.get("clients", 1))
        self.u_shape = bool(cfg.extra.get("u_shape", False))
        self.audit_samples = int(cfg.extra.get("audit_samples", 300))
        if self.clients < 1:
            raise ValueError(f"train.clients: must be >= 1, got {self.clients}")
        super().__init__(cfg)
        names = cfg.extra.get("rank_names", [])
        if names and (len(names) != self.size or len(set(names)) != len(names)
                      or not all(isinstance(n, str) and n for n in names)):
            raise ValueError(f"train.rank_names: needs {self.size} distinct names (one per "
                             f"rank), got {names!r}")
        self.names = list(names)
        if any(k != 1 for k in cfg.replicas):
            raise ValueError("train.replicas: split learning runs one rank per server stage "
                             "(data-parallel replicas are for the plain pipeline layout)")
        if self.interleaved:
            if self.u_shape:
                raise ValueError("train.u_shape: not supported with schedule \"interleaved\" "
                                 "(its layout puts the last stage on the last server rank, "
                                 "not the client)")
            return
        need = 3 if self.u_shape else 2
        if self.n_stages < need:
            raise ValueError(
                f"train.cuts: {'a U-shaped' if self.u_shape else 'a'} split needs at least "
                f"{need} stages (client bottom, server{', client head' if self.u_shape else ''}),"
                f" got {self.n_stages} stage(s) from {self.n_stages - 1} cut(s)")

    # ------------------------------------------------------------------ placement
    @property
    def client_stages(self) -> tuple[int, ...]:
        if self.interleaved:
            return tuple(range(0, self.n_stages, self.n_positions))
        return (0, self.last) if self.u_shape else (0,)

    @property
    def server_stages(self) -> tuple[int, ...]:
        mine = set(self.client_stages)
        return tuple(s for s in range(self.n_stages) if s not in mine)

    @property
    def n_positions(self) -> int:
        if self.interleaved:
            return self.n_stages // self.virtual
        return 1 + len(self.server_stages)

    def stage_position(self, stage: int) -> int:
        if self.interleaved:
            return stage % self.n_positions
        return 0 if stage in self.client_stages else self.server_stages.index(stage) + 1

    @property
    def n_paths(self) -> int:
        return self.clients

    @property
    def server_ranks(self) -> int:
        return self.n_positions - 1

    @property
    def size(self) -> int:
        return self.clients + self.server_ranks

    def position_ranks(self, path: int, position: int) -> tuple[int, ...]:
        return (path,) if position == 0 else (self.clients + position - 1,)

    def is_client(self, rank: int) -> bool:
        return rank < self.clients

    def rank_name(self, rank: int) -> str:
        if self.names:
            return self.names[rank]
        if self.is_client(rank):
            return f"client{rank}"
        return f"server{rank - self.clients + 1}"

    def path_name(self, path: int) -> str:
        return self.rank_name(path)

    def stage_name(self, stage: int, client: int | None = None) -> str:
        """Checkpoint name of a stage's weights: client stages exist once per client."""
        if stage in self.client_stages:
            part = "bottom" if stage == 0 else "head" if stage == self.last else f"stage{stage}"
            return f"client{client}_{part}"
        return f"server_stage{stage}"

    def copies(self, rank: int) -> dict[int, str]:
        if self.is_client(rank):
            return {s: self.stage_name(s, rank) for s in self.client_stages}
        pos = rank - self.clients + 1
        return {s: self.stage_name(s) for s in self.server_stages
                if self.stage_position(s) == pos}

    def _describe_extra(self) -> str:
        return (f"; {self.clients} client(s), {self.server_ranks} server rank(s), "
                f"{'U-shaped' if self.u_shape else 'labels sent to the server'}")

    # ------------------------------------------------------------------ data and order
    def uses_source(self, cfg: Any) -> bool:
        return cfg.data.get("source", "auto") not in DIGITS_SOURCES

    def load_data(self, cfg: Any, data: Any) -> tuple[dict[int, Any], Any]:
        """Client shards of the training split, and the test split."""
        d = cfg.data
        shuffle = cfg.shuffle
        if data is None:
            full = load_digits(d.get("source", "auto"), dtype=cfg.np_dtype)
            train, test = train_test_split(full, float(d.get("test_fraction", 0.25)),
                                           seed=cfg.seed, shuffle=shuffle)
        elif data.test is None:
            train, test = train_test_split(data.train, float(d.get("test_fraction", 0.25)),
                                           seed=cfg.seed, shuffle=shuffle)
        else:
            train, test = data.train, data.test
        limit = int(d.get("limit", 0))
        if limit:
            train = Dataset(train.X[:limit], train.y[:limit])
        shards = shard(train, self.clients, d.get("shard", "iid"),
                       alpha=float(d.get("alpha", 0.5)), seed=cfg.seed, shuffle=shuffle)
        return dict(enumerate(shards)), test

    def steps(self, epoch: int, sizes: dict[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        """Round robin: client ``c``'s ``j``-th minibatch, clients in turn (see splitnn)."""
        cfg = self.cfg
        order = {c: minibatch_order(n, cfg.minibatch, epoch, cfg.seed, cfg.shuffle, (c,))
                 for c, n in sizes.items()}
        for c, j in round_robin([sizes[c] for c in range(self.clients)], cfg.minibatch, epoch):
            yield c, order[c][j]

    def rng_note(self, seed: int, epoch: int) -> str:
        if not self.cfg.shuffle:
            return "file order (shuffle = false)"
        return f"default_rng([{seed}, client, {epoch}]) for the next epoch"

    # ------------------------------------------------------------------ the privacy audit
    def finish(self, session: Any) -> dict[str, Any]:
        """dCor² between a client's raw inputs and its cut-layer activations (client ranks)."""
        from .dcor import dcor2_u

        rank = session.rank
        if not self.is_client(rank) or rank not in session.mine:
            return {"dcor2_u": float("nan")}
        data = session.mine[rank]
        n = min(self.audit_samples, len(data.y))
        if n < 4:
            return {"dcor2_u": float("nan")}
        bottom = session.workers[0]
        X = data.X[:n]
        act = bottom.to_wire(bottom.predict(bottom.from_wire(session.model.as_input(X))))
        return {"dcor2_u": dcor2_u(np.asarray(X, np.float64), np.asarray(act))}

    def result(self, ranks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"dcor2_u": [ranks[c]["dcor2_u"] for c in range(self.clients)]}

    def report_lines(self, result: dict[str, Any], ranks: list[dict[str, Any]]) -> list[str]:
        lines = []
        for c in range(self.clients):
            name = self.rank_name(c)
            leaked = [k for k in ("label", "input") if result["crossed"][name].get(k, [0])[0]]
            lines.append(f"privacy: {name} sent {' and '.join(leaked) if leaked else 'no'} "
                         f"label/input arrays; dCor²(raw input, cut activation) = "
                         f"{result['dcor2_u'][c]:.3f} (bias-corrected)")
        return lines
