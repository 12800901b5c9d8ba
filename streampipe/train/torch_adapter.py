"""The PyTorch adapter: a ``torch.nn.Sequential`` cut by its children, one stage per worker.

Optional: torch is imported only when a job's model is a torch module (``pip install
'streampipe[torch]'``). Each stage is a ``torch.nn.Sequential`` of the model's children
``[a, b)`` under their original names, so a stage's ``state_dict`` keys are the full model's.

Autograd runs per microbatch: :meth:`TorchWorker.forward` keeps the stage input (a fresh leaf
that requires grad, except on stage 0) and the graph; :meth:`TorchWorker.backward` runs it
with the incoming gradient and returns the input's gradient. Parameter gradients accumulate in
``.grad`` over the minibatch's microbatches (summed losses) and :meth:`TorchWorker.step`
divides them by the minibatch size once before ``optimizer.step()``, which is the gradient of
the mean loss over the minibatch.

Split backward (zero-bubble ``I``/``W``): ``backward_input`` asks autograd only for the
gradients of the stage input and of the output of every child that has parameters (autograd
then skips the weight-gradient kernels), keeping the graph; ``backward_weight`` asks each such
child's subgraph for its parameters' gradients from the kept output gradient. Children must not
modify their inputs in place (``ReLU(inplace=True)`` on a child output) for this split.

Recomputation keeps only the stage input (and the RNG state) and runs the forward again under
autograd just before the backward, as ``torch.utils.checkpoint`` does; modules that update state
in forward (batch-norm running statistics) would update it twice.

Bytes held for pending backwards are counted exactly: a ``saved_tensors_hooks`` pack hook sees
every tensor autograd saves (parameters excluded), plus the kept inputs and outputs, deduplicated
by storage.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np

from .worker import SumFn

__all__ = ["TORCH_HINT", "import_torch", "is_torch_module", "limit_threads", "TorchModel",
           "TorchWorker", "torch_device"]

TORCH_HINT = "PyTorch models need the torch extra: pip install 'streampipe[torch]'"
# received buffers are read-only; a stage never writes into its input
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def import_torch() -> Any:
    """``torch``, or a ValueError saying which extra to install."""
    try:
        import torch  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise ValueError(f"train.model: {TORCH_HINT} ({exc})") from None
    return torch


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a torch module (without importing torch when nobody else did)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def torch_device(device: str, local_rank: int = 0, name: str = "train") -> Any:
    """``[train] device`` for a torch model: ``cpu``, ``gpu`` (CUDA, else an error), ``auto``."""
    torch = import_torch()
    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        # node-local rank i takes visible GPU i % count, as CuPy stages do (streampipe.gpu)
        from ..gpu import select_gpu  # noqa: PLC0415

        index = select_gpu(local_rank, torch.cuda.device_count())
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if device == "gpu":
        raise ValueError(f"{name}.device: \"gpu\" but torch sees no CUDA device "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use "
                         "device = \"auto\" to fall back to the CPU")
    print(f"streampipe: {name}.device = \"auto\" found no CUDA device for torch, running on CPU",
          file=sys.stderr, flush=True)
    return torch.device("cpu")


def _optimizer(torch: Any, params: list[Any], spec: dict[str, Any]) -> Any:
    spec = dict(spec)
    name = spec.pop("name", "sgd")
    if name == "sgd":
        return torch.optim.SGD(params, lr=spec.get("lr", 0.1), momentum=spec.get("momentum", 0.0))
    return torch.optim.Adam(params, lr=spec.get("lr", 1e-3),
                            betas=(spec.get("beta1", 0.9), spec.get("beta2", 0.999)),
                            eps=spec.get("eps", 1e-8))


def _loss(torch: Any, name: str, out: Any, target: Any) -> Any:
    F = torch.nn.functional
    if name == "cross_entropy":
        return F.cross_entropy(out, target, reduction="sum")
    per = max(out[0].numel(), 1) if out.dim() > 1 else 1
    return F.mse_loss(out, target, reduction="sum") / per


def _unpack(t: Any) -> Any:
    return t


class _Pending:
    """What one microbatch keeps between its forward and its (last) backward."""

    __slots__ = ("x", "target", "out", "loss", "outs", "rng", "storages", "wgrads")

    def __init__(self, x: Any, target: Any) -> None:
        self.x, self.target = x, target
        self.out = self.loss = self.rng = None
        self.outs: list[Any] = []  # output of each child, for the split backward
        self.storages: dict[int, int] = {}  # data_ptr -> bytes of what autograd saved
        self.wgrads: list[tuple[int, Any, Any]] = []


class TorchWorker:
    """One stage of a :class:`TorchModel` (see :class:`~streampipe.train.worker.StageWorker`)."""

    def __init__(self, module: Any, optimizer: dict[str, Any], *, loss: str | None,
                 recompute: bool, input_grad: bool, device: Any, codec: Any = None) -> None:
        import torch  # noqa: PLC0415 - a TorchWorker only exists when torch does

        self.torch, self.module, self.device = torch, module, device
        self.children = list(module.children())
        self.params = [p for p in module.parameters() if p.requires_grad]
        self._param_ptrs = {p.untyped_storage().data_ptr() for p in module.parameters()}
        # a stage of parameter-free children (Flatten, ReLU) has nothing to optimise
        self.opt = _optimizer(torch, self.params, optimizer) if self.params else None
        self.opt_kind = optimizer.get("name", "sgd")
        self.loss_name, self.recompute, self.input_grad = loss, recompute, input_grad
        self._codec = codec
        self.gpu: dict[str, Any] = codec.extra if codec is not None else {}
        self._mb: dict[Hashable, _Pending] = {}
        self.loss = 0.0
        self._n = 0
        module.train()

    # ---------------------------------------------------------------- forward
    def begin(self, n_samples: int) -> None:
        for q in self.params:
            q.grad = None
        self._n, self.loss = n_samples, 0.0

    def _run(self, p: _Pending, target: Any) -> None:
        """The forward of ``p.x`` under autograd, recording what it saves."""
        torch = self.torch
        ptrs = self._param_ptrs

        def pack(t: Any) -> Any:
            st = t.untyped_storage()
            if st.data_ptr() not in ptrs:
                p.storages[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
            h = p.x
            p.outs = []
            for child in self.children:
                h = child(h)
                p.outs.append(h)
            p.out = h
            if target is not None:
                p.loss = _loss(torch, self.loss_name, h, target)

    def forward(self, mb: Hashable, x: Any, target: Any = None) -> Any:
        torch = self.torch
        if mb in self._mb:
            raise RuntimeError(f"microbatch {mb!r} is already in flight")
        if (target is None) != (self.loss_name is None):
            raise ValueError("the last stage (and only it) takes each microbatch's target")
        x = x.detach()
        if self.input_grad and x.is_floating_point():
            x.requires_grad_(True)
        p = _Pending(x, target)
        if self.recompute:
            p.rng = (torch.get_rng_state(),
                     torch.cuda.get_rng_state(self.device) if self.device.type == "cuda"
                     else None)
            with torch.no_grad():
                out = self.module(x)
                loss = _loss(torch, self.loss_name, out, target) if target is not None else None
        else:
            self._run(p, target)
            out, loss = p.out, p.loss
        self._mb[mb] = p
        if target is None:
            return out.detach()
        self.loss += float(loss.detach())
        return None

    def _graph(self, mb: Hashable) -> _Pending:
        p = self._mb[mb]
        if self.recompute and p.out is None:
            torch = self.torch
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.set_rng_state(p.rng[0])
                if p.rng[1] is not None:
                    torch.cuda.set_rng_state(p.rng[1], self.device)
                self._run(p, p.target)
        return p

    # ---------------------------------------------------------------- backward
    def _seed(self, p: _Pending, grad: Any) -> tuple[Any, Any]:
        return (p.loss, None) if self.loss_name is not None else (p.out, grad)

    def backward(self, mb: Hashable, grad: Any = None) -> Any:
        p = self._graph(mb)
        out, g = self._seed(p, grad)
        out.backward(g)
        del self._mb[mb]
        return p.x.grad if self.input_grad else None

    def backward_input(self, mb: Hashable, grad: Any = None) -> Any:
        torch = self.torch
        p = self._graph(mb)
        out, g = self._seed(p, grad)
        weighted = [i for i, c in enumerate(self.children)
                    if any(q.requires_grad for q in c.parameters())]
        inputs = [p.outs[i] for i in weighted]
        if self.input_grad and p.x.requires_grad:
            inputs.append(p.x)
        if not inputs:
            return None
        got = torch.autograd.grad(out, inputs, g, retain_graph=True, allow_unused=True)
        p.wgrads = [(i, p.outs[i], got[k]) for k, i in enumerate(weighted)]
        return got[-1] if self.input_grad and p.x.requires_grad else None

    def backward_weight(self, mb: Hashable) -> None:
        torch = self.torch
        p = self._mb.pop(mb)
        for i, h, g in p.wgrads:
            if g is None:
                continue
            params = [q for q in self.children[i].parameters() if q.requires_grad]
            for q, gq in zip(params, torch.autograd.grad(h, params, g, allow_unused=True),
                             strict=True):
                if gq is None:
                    continue
                if q.grad is None:
                    q.grad = gq
                else:
                    q.grad.add_(gq)

    def step(self, reduce: SumFn | None = None) -> None:
        torch = self.torch
        if reduce is not None and self.params:
            for q in self.params:
                if q.grad is None:
                    q.grad = torch.zeros_like(q)
            flat = torch.cat([q.grad.reshape(-1) for q in self.params])
            summed = torch.from_numpy(np.ascontiguousarray(reduce(flat.cpu().numpy())))
            summed = summed.to(self.device)
            at = 0
            for q in self.params:
                q.grad.copy_(summed[at:at + q.numel()].view_as(q))
                at += q.numel()
        for q in self.params:
            if q.grad is not None:
                q.grad.div_(self._n)
        if self.opt is not None:
            self.opt.step()

    # ---------------------------------------------------------------- state
    def held(self) -> tuple[int, int]:
        seen: dict[int, int] = {}
        for p in self._mb.values():
            seen.update(p.storages)
            for t in (p.x, p.out):
                if t is not None:
                    st = t.untyped_storage()
                    seen[st.data_ptr()] = st.nbytes()
        return len(self._mb), sum(seen.values())

    def state(self) -> dict[str, Any]:
        model = {k: v.detach().cpu().numpy().copy() for k, v in self.module.state_dict().items()}
        sd = self.opt.state_dict() if self.opt is not None else {"state": {}, "param_groups": []}
        state: dict[str, Any] = {}
        for idx, entry in sd["state"].items():
            state[str(idx)] = {k: (v.detach().cpu().numpy().copy()
                                   if isinstance(v, self.torch.Tensor) else v)
                               for k, v in entry.items() if v is not None}
        groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
        return {"torch": model, "optimizer": {"kind": self.opt_kind, "state": state,
                                              "param_groups": json.dumps(groups, default=str)}}

    def load_state(self, state: dict[str, Any], where: str) -> None:
        torch = self.torch
        if "torch" not in state:
            raise ValueError(f"checkpoint {where}: not a torch stage (no 'torch' group)")
        saved = state["torch"]
        own = self.module.state_dict()
        if set(saved) != set(own):
            raise ValueError(f"checkpoint {where}/torch: keys {sorted(saved)}, the model has "
                             f"{sorted(own)}")
        for k, v in own.items():
            if tuple(np.shape(saved[k])) != tuple(v.shape):
                raise ValueError(f"checkpoint {where}/torch/{k}: shape {np.shape(saved[k])}, "
                                 f"the model has {tuple(v.shape)}")
        self.module.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in
                                     saved.items()})
        o = state.get("optimizer", {})
        if o.get("kind") != self.opt_kind:
            raise ValueError(f"checkpoint {where}/optimizer: saved {o.get('kind')!r}, job uses "
                             f"{self.opt_kind!r}")
        if self.opt is None:
            return
        st = {int(i): {k: torch.as_tensor(np.asarray(v)) if isinstance(v, np.ndarray) else v
                       for k, v in entry.items()} for i, entry in o.get("state", {}).items()}
        self.opt.load_state_dict({"state": st, "param_groups": json.loads(o["param_groups"])})

    def predict(self, x: Any) -> Any:
        with self.torch.no_grad():
            return self.module(x)

    # ---------------------------------------------------------------- wire
    def to_wire(self, value: Any) -> Any:
        torch = self.torch
        if not isinstance(value, torch.Tensor):
            return value
        value = value.detach()
        if value.device.type == "cuda" and self._codec is not None:
            # through streampipe.gpu's staging path (pinned buffers), via DLPack without a copy
            return self._codec.to_wire(self._codec.xp.from_dlpack(value))
        return value.cpu().numpy()

    def from_wire(self, value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            return value
        if self.device.type == "cuda" and self._codec is not None:
            return self.torch.from_dlpack(self._codec.from_wire(value))
        return self.torch.from_numpy(value).to(self.device)


class TorchModel:
    """A ``torch.nn.Sequential`` to cut by its children (``cuts`` index them)."""

    kind = "torch"

    def __init__(self, module: Any, dtype: Any, device: Any) -> None:
        torch = import_torch()
        if not isinstance(module, torch.nn.Sequential):
            raise ValueError(f"train.model: a torch model must be a torch.nn.Sequential (cuts "
                             f"index its children), got {type(module).__name__}")
        self.torch, self.device = torch, device
        self.dtype = {np.dtype("float32"): torch.float32,
                      np.dtype("float64"): torch.float64}[np.dtype(dtype)]
        self.np_dtype = np.dtype(dtype)
        self.module = module.to(device=device, dtype=self.dtype)
        self.named = list(module.named_children())
        if not self.named:
            raise ValueError("train.model: the torch.nn.Sequential has no children")
        self._codec = None
        if device.type == "cuda":
            from ..gpu import WireCodec, gpu_available  # noqa: PLC0415

            if gpu_available():  # CuPy is there: use its pinned staging for the wire
                import cupy  # noqa: PLC0415

                self._codec = WireCodec(cupy)

    @property
    def n_layers(self) -> int:
        return len(self.named)

    @property
    def device_name(self) -> str:
        return "gpu" if self.device.type == "cuda" else "cpu"

    def layer_names(self) -> list[str]:
        return [f"{n}:{type(c).__name__}" for n, c in self.named]

    def stage(self, a: int, b: int) -> Any:
        return self.torch.nn.Sequential(OrderedDict(
            (n, copy.deepcopy(c)) for n, c in self.named[a:b]))

    def worker(self, a: int, b: int, *, optimizer: dict[str, Any], loss: str | None,
               recompute: bool = False) -> TorchWorker:
        return TorchWorker(self.stage(a, b), optimizer, loss=loss, recompute=recompute,
                           input_grad=a > 0, device=self.device, codec=self._codec)

    def checksum(self) -> float:
        return float(sum(float(v.double().sum()) * (i + 1) for i, v in
                         enumerate(self.module.state_dict().values())))

    def as_input(self, x: np.ndarray) -> Any:
        return np.asarray(x, dtype=self.np_dtype) if np.issubdtype(
            np.asarray(x).dtype, np.floating) else np.asarray(x)

    def as_target(self, y: np.ndarray, loss: str) -> Any:
        return np.asarray(y, np.int64) if loss == "cross_entropy" else np.asarray(
            y, self.np_dtype)

    def layer_times(self, x: np.ndarray, repeats: int = 5) -> list[float]:
        """Median forward+backward time of each child on sample input ``x``."""
        torch = self.torch
        model = copy.deepcopy(self.module)
        h = torch.from_numpy(self.as_input(x)).to(self.device)
        cuda = self.device.type == "cuda"
        out: list[float] = []
        for child in model.children():
            runs = []
            for _ in range(repeats + 1):  # the first call warms up kernels and allocations
                inp = h.detach().requires_grad_(h.is_floating_point())
                if cuda:
                    torch.cuda.synchronize(self.device)
                t0 = time.perf_counter()
                y = child(inp)
                if y.requires_grad:
                    y.backward(torch.ones_like(y))
                if cuda:
                    torch.cuda.synchronize(self.device)
                runs.append(time.perf_counter() - t0)
            out.append(float(np.median(runs[1:])))
            h = y.detach()
        return out


def limit_threads(ranks_on_node: int) -> None:
    """Share the cores among the node's ranks: torch defaults to every core per process, which
    oversubscribes the CPU as soon as several stages run on one node."""
    import os

    if os.environ.get("OMP_NUM_THREADS"):
        return
    torch = import_torch()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(ranks_on_node, 1)))
