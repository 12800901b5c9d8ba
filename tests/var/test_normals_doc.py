"""pipelines/var/README.md, "Drawing the normals": redrawing the shocks from the documented
steps alone (the portfolio file read here, not by the pipeline's parser) gives the generator's
batches bit for bit, also after a seek and for a short last batch."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipelines.var.scenarios import ScenarioGenerator
from streampipe import Context

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DATA = Path(__file__).resolve().parents[2] / "pipelines" / "var" / "data"


def documented_shocks(path: Path, n: int, b: int, seed: int, h: float | None = None):
    doc = tomllib.loads(path.read_text())
    sigma = np.array([f["daily_vol"] for f in doc["factors"]])
    corr = np.array(doc["correlation"]["matrix"], dtype=float)
    cov = corr * np.outer(sigma, sigma)
    h = doc["model"]["horizon_days"] if h is None else h
    chol = np.linalg.cholesky(cov)
    n_batches = math.ceil(n / b)
    children = np.random.SeedSequence(seed).spawn(n_batches)
    for i in range(n_batches):
        rows = min(b, n - i * b)
        z = np.random.default_rng(children[i]).standard_normal((rows, len(sigma)))
        yield z @ (math.sqrt(h) * chol).T


@pytest.mark.parametrize("name,h", [("portfolio.toml", None), ("linear.toml", 3.0)])
def test_generator_draws_the_documented_normals(name, h):
    params = {"portfolio": str(DATA / name), "n_scenarios": 25, "batch_size": 10, "seed": 7}
    if h is not None:
        params["horizon_days"] = h
    gen = ScenarioGenerator()
    gen.setup(Context(params=params))
    want = list(documented_shocks(DATA / name, 25, 10, 7, h))
    got = list(gen.generate())
    assert [g["batch"] for g in got] == [0, 1, 2]
    assert [g["shocks"].shape[0] for g in got] == [10, 10, 5]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g["shocks"], w)
    gen.seek(2)  # a resume draws batch 2 exactly as the uninterrupted run did
    np.testing.assert_array_equal(next(iter(gen.generate()))["shocks"], want[2])


def test_the_readme_documents_the_steps():
    text = (DATA.parent / "README.md").read_text()
    section = text.split("## Drawing the normals", 1)[1].split("\n## ", 1)[0]
    for needle in ("SeedSequence(seed).spawn(n_batches)", "standard_normal((rows_i, F))",
                   "np.linalg.cholesky", "Z_i @ (sqrt(h) · L)ᵀ"):
        assert needle in section, needle
