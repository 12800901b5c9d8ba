"""Bring-your-own data and model references for [train] jobs, and the framework's layering."""

from __future__ import annotations

import ast
from pathlib import Path

import h5py
import numpy as np
import pytest

from streampipe.train.config import parse_train
from streampipe.train.data import load_source, minibatch_order

ROOT = Path(__file__).resolve().parents[2]


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return str(path)


def test_h5_source_with_and_without_test_split(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.random((20, 5)), rng.integers(0, 3, 20)
    d = load_source(_h5(tmp_path / "a.h5", x_train=X, y_train=y), None, "cross_entropy")
    assert d.test is None and np.array_equal(d.train.X, X) and np.array_equal(d.train.y, y)
    d = load_source(_h5(tmp_path / "b.h5", x_train=X, y_train=y, x_test=X[:4], y_test=y[:4]),
                    None, "cross_entropy")
    assert len(d.test.y) == 4
    # relative to the job file's folder
    d = load_source("b.h5", str(tmp_path / "job.toml"), "cross_entropy")
    assert len(d.train.y) == 20


@pytest.mark.parametrize("arrays,match", [
    ({"x_train": np.zeros((4, 2))}, r"bad\.h5: missing dataset\(s\) y_train"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(3, int)}, r"y_train has 3 rows, x_train "
                                                                 "has 4"),
    ({"x_train": np.zeros(4), "y_train": np.zeros(4, int)}, r"x_train has shape \(4,\)"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4)}, r"y_train .* dtype float64; loss "
                                                            "cross_entropy needs"),
    ({"x_train": np.zeros((4, 2)), "y_train": -np.ones(4, int)}, "negative class label"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 3)),
      "y_test": np.zeros(2, int)}, r"x_test samples have shape \(3,\)"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 2))},
     "x_test and y_test come together"),
    ({"x_train": np.array([b"a", b"b"]), "y_train": np.zeros(2, int)}, "x_train has dtype"),
])
def test_bad_h5_names_file_and_dataset(tmp_path, arrays, match):
    with pytest.raises(ValueError, match=match):
        load_source(_h5(tmp_path / "bad.h5", **arrays), None, "cross_entropy")


def test_missing_file_and_bad_loader(tmp_path):
    with pytest.raises(ValueError, match="train.data.source: file 'nope.h5' not found"):
        load_source("nope.h5", str(tmp_path / "job.toml"), "mse")
    (tmp_path / "ld.py").write_text(
        "import numpy as np\n"
        "def good():\n    return np.zeros((6, 2)), np.ones((6, 1))\n"
        "def odd():\n    return 3\n"
        "def boom():\n    raise OSError('disk')\n")
    base = str(tmp_path / "job.toml")
    assert len(load_source("ld.py:good", base, "mse").train.y) == 6
    with pytest.raises(ValueError, match=r"ld\.py:odd\(\): must return a dict"):
        load_source("ld.py:odd", base, "mse")
    with pytest.raises(ValueError, match=r"ld\.py:boom\(\) failed: OSError: disk"):
        load_source("ld.py:boom", base, "mse")
    with pytest.raises(ValueError, match="neither an .h5/.hdf5 file nor 'module:load'"):
        load_source("data.csv", base, "mse")


def test_shuffle_false_keeps_file_order():
    order = minibatch_order(10, 3, epoch=4, seed=9, shuffle=False)
    assert [list(b) for b in order] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    a, b = minibatch_order(10, 3, 0, 1), minibatch_order(10, 3, 1, 1)
    assert not np.array_equal(np.concatenate(a), np.concatenate(b))


@pytest.mark.parametrize("table,match", [
    ({"model": "nofile.py:build", "cuts": [1]}, "train.model: file 'nofile.py' not found"),
    ({"model": "no_such_module_x:build", "cuts": [1]}, "module 'no_such_module_x' not found"),
    ({"model": "build", "cuts": [1]}, "expected 'module:build'"),
    ({"model": "os:path", "cuts": "auto"}, "train.stages: required"),
    ({"model": "os:path", "cuts": [2], "stages": 3}, "train.stages: 3 but cuts give 2"),
    ({"model": "os:path", "cuts": [1], "replicas": [1, 1, 1]}, "train.replicas: needs one count"),
    ({"model": "os:path", "cuts": [1], "replicas": [5, 1]}, r"train.replicas\[0\]: 5 replicas"),
    ({"model": "os:path", "cuts": [1], "uses": "os:path"}, "not a streampipe.train.Layout"),
    ({"model": "os:path", "cuts": [1], "clients": 2}, "train.clients: unknown key"),
])
def test_bad_fields_are_named(table, match):
    with pytest.raises(ValueError, match=match):
        parse_train(table)


def test_framework_imports_no_built_in():
    """streampipe/ never imports pipelines/ (the built-ins use the framework, not back)."""
    for path in (ROOT / "streampipe").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                assert not n.startswith("pipelines"), f"{path.relative_to(ROOT)} imports {n}"
