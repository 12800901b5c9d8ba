"""Split-learning layers, loss and optimizers against finite differences and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.split_learning import (
    GELU,
    SGD,
    Adam,
    Conv2d,
    Flatten,
    Linear,
    ReLU,
    Reshape,
    build_model,
    make_optimizer,
    softmax_cross_entropy,
)

F64 = np.float64
# central differences with h = 1e-6 in float64: truncation ~h² and rounding ~1e-16/h keep the
# relative error near 1e-9 for these smooth-enough functions, so 1e-6 leaves a wide margin
H, TOL = 1e-6, 1e-6


def _value(layer, x, r):
    y = layer.forward(x, mb="fd")
    layer.backward(np.zeros_like(y), mb="fd")  # clears the saved inputs; zero grad adds nothing
    return float((y * r).sum())


def _numeric(f, a):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + H
        up = f()
        a[i] = old - H
        down = f()
        a[i] = old
        g[i] = (up - down) / (2 * H)
    return g


def _rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


LAYERS = {
    "linear": (lambda: Linear(5, 4, seed=1, dtype=F64), (3, 5)),
    "relu": (lambda: ReLU(dtype=F64), (3, 7)),
    "gelu": (lambda: GELU(dtype=F64), (3, 7)),
    "conv": (lambda: Conv2d(2, 3, 3, seed=2, dtype=F64), (2, 2, 5, 6)),
    "conv_s2p1": (lambda: Conv2d(2, 3, 3, stride=2, padding=1, seed=3, dtype=F64), (2, 2, 6, 5)),
    "flatten": (lambda: Flatten(dtype=F64), (2, 3, 4)),
    "reshape": (lambda: Reshape((2, 3), dtype=F64), (4, 6)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_backward_matches_finite_differences(name):
    make, shape = LAYERS[name]
    layer = make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    r = rng.standard_normal(layer.forward(x, mb="probe").shape)
    layer.backward(np.zeros_like(r), mb="probe")
    layer.zero_grad()

    y = layer.forward(x)
    assert y.dtype == F64
    gx = layer.backward(r)
    assert gx.shape == x.shape
    assert _rel(gx, _numeric(lambda: _value(layer, x, r), x)) < TOL
    for p, g in zip(layer.params, layer.grads, strict=True):
        assert _rel(g, _numeric(lambda: _value(layer, x, r), p)) < TOL
    assert layer.live == 0


def test_param_grads_accumulate_over_microbatches():
    # grads of two microbatches added == grads of their concatenation (sum over samples)
    rng = np.random.default_rng(1)
    x, r = rng.standard_normal((6, 5)), rng.standard_normal((6, 4))
    a, b = Linear(5, 4, seed=0, dtype=F64), Linear(5, 4, seed=0, dtype=F64)
    a.forward(x[:2], mb=0)
    a.forward(x[2:], mb=1)  # two microbatches in flight at once
    assert a.live == 2
    a.backward(r[2:], mb=1)
    a.backward(r[:2], mb=0)
    b.forward(x)
    b.backward(r)
    for ga, gb in zip(a.grads, b.grads, strict=True):
        np.testing.assert_allclose(ga, gb, rtol=1e-13)
    with pytest.raises(RuntimeError, match="microbatch 0 without its forward"):
        a.backward(r[:2], mb=0)


def test_gelu_known_values():
    # GELU_tanh(1) = 0.5 (1 + tanh(sqrt(2/pi) * 1.044715)); GELU(0) = 0; odd part x/2... by hand
    g = GELU(dtype=F64)
    y = g.forward(np.array([[0.0, 1.0, -1.0]]))
    expect = 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * 1.044715))
    np.testing.assert_allclose(y, [[0.0, expect, expect - 1.0]], rtol=1e-15, atol=1e-16)


def test_conv_equals_direct_loops():
    rng = np.random.default_rng(2)
    conv = Conv2d(2, 3, 3, stride=2, padding=1, seed=5, dtype=F64)
    x = rng.standard_normal((2, 2, 7, 6))
    y = conv.forward(x)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((2, 3, 4, 3))
    for n, o, i, j in np.ndindex(ref.shape):
        ref[n, o, i, j] = (xp[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * conv.W[o]).sum() + conv.b[o]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cross_entropy_grad_and_value(reduction):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, 4)) * 3
    y = np.array([0, 3, 1, 1, 2])
    loss, g = softmax_cross_entropy(z, y, reduction)
    ref = -sum(z[i, y[i]] - np.log(np.exp(z[i]).sum()) for i in range(5))
    ref = ref / 5 if reduction == "mean" else ref
    assert loss == pytest.approx(ref, rel=1e-13)
    num = _numeric(lambda: float(softmax_cross_entropy(z, y, reduction)[0]), z)
    assert _rel(g, num) < TOL
    big = softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))[0]
    assert big == pytest.approx(1000.0)  # no overflow
    with pytest.raises(ValueError, match="reduction"):
        softmax_cross_entropy(z, y, "avg")


def test_float32_default_and_float64_option():
    m32 = build_model([{"type": "linear", "in": 4, "out": 3}], seed=7)
    m64 = build_model([{"type": "linear", "in": 4, "out": 3}], seed=7, dtype=F64)
    assert m32.params[0].dtype == np.float32 and m64.params[0].dtype == F64
    # same seed, same draws: float32 weights are the rounded float64 ones
    np.testing.assert_array_equal(m32.params[0], m64.params[0].astype(np.float32))


def test_split_shares_layers_and_keeps_seeds():
    spec = [{"type": "linear", "in": 4, "out": 8}, {"type": "relu"},
            {"type": "linear", "in": 8, "out": 3}]
    model = build_model(spec, seed=3, dtype=F64)
    stages = model.split([2])
    assert [len(s) for s in stages] == [2, 1] and stages[1].layers[0] is model.layers[2]
    x = np.random.default_rng(0).standard_normal((5, 4))
    np.testing.assert_array_equal(stages[1].forward(stages[0].forward(x)), model.forward(x, mb=1))
    again = build_model(spec, seed=3, dtype=F64)
    np.testing.assert_array_equal(again.params[2], model.params[2])
    assert not np.array_equal(build_model(spec, seed=4, dtype=F64).params[0], model.params[0])
    with pytest.raises(ValueError, match="cuts"):
        model.split([2, 2])


@pytest.mark.parametrize("spec,match", [
    ([{"type": "dense"}], r"model\[0\].type"),
    ([{"type": "relu"}, {"type": "linear", "in": 3}], r"model\[1\].out: required"),
    ([{"type": "linear", "in": 3, "out": -1}], r"model\[0\].out: must be an integer"),
    ([{"type": "relu", "size": 3}], r"model\[0\]: unknown field"),
])
def test_build_model_errors_name_the_field(spec, match):
    with pytest.raises(ValueError, match=match):
        build_model(spec)


def test_sgd_momentum_by_hand():
    p = np.array([1.0])
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step([p], [np.array([2.0])])  # v = 2, p = 1 - 0.2
    opt.step([p], [np.array([1.0])])  # v = 0.9*2 + 1 = 2.8, p = 0.8 - 0.28
    assert p[0] == pytest.approx(0.52, rel=1e-15)


def test_adam_by_hand():
    # step 1: m_hat = g, v_hat = g², so the update is lr * g / (|g| + eps)
    p, g = np.array([1.0, -1.0]), np.array([0.5, -2.0])
    opt = Adam(lr=0.01, eps=1e-8)
    opt.step([p], [g])
    np.testing.assert_allclose(p, [1 - 0.01 * 0.5 / (0.5 + 1e-8), -1 + 0.01 * 2 / (2 + 1e-8)],
                               rtol=1e-14)
    # step 2 with the same gradient: m_hat = g, v_hat = g² again (bias correction is exact)
    opt.step([p], [g])
    np.testing.assert_allclose(p, [1 - 0.02 * 0.5 / (0.5 + 1e-8), -1 + 0.02 * 2 / (2 + 1e-8)],
                               rtol=1e-14)


def test_make_optimizer_errors():
    assert isinstance(make_optimizer({"name": "adam", "lr": 1e-3}), Adam)
    with pytest.raises(ValueError, match="optimizer.name"):
        make_optimizer({"name": "rmsprop"})
    with pytest.raises(ValueError, match="lr: must be > 0"):
        make_optimizer({"name": "sgd", "lr": 0})
    with pytest.raises(ValueError, match="optimizer:"):
        make_optimizer({"name": "sgd", "beta": 0.9})


@pytest.mark.gpu
def test_cupy_matches_numpy():
    cp = pytest.importorskip("cupy")
    try:
        cp.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - any CUDA failure means no usable device
        pytest.skip("no CUDA device")
    spec = [{"type": "reshape", "shape": [1, 8, 8]},
            {"type": "conv2d", "in": 1, "out": 4, "kernel": 3, "padding": 1}, {"type": "gelu"},
            {"type": "flatten"}, {"type": "linear", "in": 256, "out": 10}]
    x = np.random.default_rng(0).standard_normal((6, 64))
    cpu, gpu = build_model(spec, dtype=F64), build_model(spec, dtype=F64, xp=cp)
    r = np.ones((6, 10))
    yc, yg = cpu.forward(x), gpu.forward(cp.asarray(x))
    np.testing.assert_allclose(cp.asnumpy(yg), yc, rtol=1e-10)
    np.testing.assert_allclose(cp.asnumpy(gpu.backward(cp.asarray(r))), cpu.backward(r), rtol=1e-10)
    for gc, gg in zip(cpu.grads, gpu.grads, strict=True):
        np.testing.assert_allclose(cp.asnumpy(gg), gc, rtol=1e-10, atol=1e-12)

