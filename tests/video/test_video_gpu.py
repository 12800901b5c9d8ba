"""GPU kernels against the NumPy paths (skipped without CuPy and a device)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.video.motion import full_search, sad_volume
from pipelines.video.synthetic import pan_frames
from pipelines.video.transform import dct_blocks, quantize

cp = pytest.importorskip("cupy")
try:
    cp.cuda.runtime.getDeviceCount()
except Exception:  # pragma: no cover - depends on the machine
    pytest.skip("no CUDA device", allow_module_level=True)

pytestmark = pytest.mark.gpu
FRAMES = pan_frames(2, 96, 64, shift=(2, -3)).y


@pytest.mark.parametrize("rng", [0, 3, 8])
def test_sad_volume_kernel_is_exact(rng):
    cpu = sad_volume(FRAMES[1], FRAMES[0], rng)
    gpu = sad_volume(cp.asarray(FRAMES[1]), cp.asarray(FRAMES[0]), rng, xp=cp)
    assert np.array_equal(cpu, gpu)  # integer sums: exact
    assert np.array_equal(full_search(FRAMES[1], FRAMES[0], rng)[0],
                          full_search(FRAMES[1], FRAMES[0], rng, xp=cp)[0])


@pytest.mark.parametrize("inverse", [False, True])
def test_dct_kernel_matches_numpy(inverse):
    rng = np.random.default_rng(2)
    blocks = rng.integers(-255, 256, size=(300, 8, 8)).astype(np.float64)
    cpu = dct_blocks(blocks, inverse=inverse)
    gpu = cp.asnumpy(dct_blocks(cp.asarray(blocks), inverse=inverse, xp=cp))
    # Same float64 terms summed in another order: differences of a few ulp of ~2000.
    assert np.max(np.abs(cpu - gpu)) < 1e-10


def test_quantize_on_gpu_gives_numpy_levels():
    residual = FRAMES[0].astype(np.int16) - 128
    # Levels can differ only where coefficient/step lands within ~1e-12 of .5; none do here.
    assert np.array_equal(quantize(residual, 60), quantize(cp.asarray(residual), 60, xp=cp))
