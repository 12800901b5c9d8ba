"""Test-suite wiring: every test that launches MPI ranks carries the ``mpi`` marker.

A test module that imports a launcher from ``tests.mpiutil`` or ``tests.builtin_jobs`` is marked
``mpi`` as a whole when it is collected, so ``pytest -m "not mpi"`` runs exactly the tests that
need no MPI. A launch from a test without the marker (a helper imported indirectly) fails the
test, so the marker cannot silently go missing.

Layout: ``unit/`` framework logic without MPI, ``mpi/`` the framework under real ranks, and one
folder per built-in pipeline (``var/``, ``video/``, ``genomics/``, ``split_learning/``,
``parareal/``) holding both its unit and its end-to-end tests.
"""

from __future__ import annotations

import types

import pytest

from tests import mpiutil

LAUNCH_MODULES = ("tests.mpiutil", "tests.builtin_jobs")


def _launches(module: types.ModuleType) -> bool:
    for value in vars(module).values():
        if isinstance(value, types.FunctionType) and value.__module__ in LAUNCH_MODULES:
            return True
        if isinstance(value, types.ModuleType) and value.__name__ in LAUNCH_MODULES:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and _launches(module):
            item.add_marker(pytest.mark.mpi)


@pytest.fixture(autouse=True)
def _mpi_marker_guard(request: pytest.FixtureRequest):
    mpiutil.CURRENT_TEST = request.node
    yield
    mpiutil.CURRENT_TEST = None
