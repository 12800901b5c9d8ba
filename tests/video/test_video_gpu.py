"""The GPU path against the NumPy path: the SAD and DCT kernels, and the whole encoder with its
motion-estimation and transform stages on a device, on real CuPy when a GPU is there and on the
strict CuPy stand-in otherwise (tests/gpu_harness.py): device arrays that refuse implicit host
conversion, mixed operands and implicit ``float()``/``bool()``, as CuPy does.

On the stand-in the kernels run through the NumPy paths, so everything is bit-exact; on a GPU
the SAD volume is still exact (integers) and the DCT equal to 1e-10 (sums in another order),
so a level could in principle round the other way there (none does on these clips).
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.video import decode, encode_serial
from pipelines.video.kernels import dct_blocks, sad_volume
from pipelines.video.motion import full_search
from pipelines.video.serial import FeedbackHub, SerialContext
from pipelines.video.stages import (
    EntropyCoder,
    MotionEstimation,
    StreamWriter,
    TransformQuantize,
    frame_items,
    source_config,
)
from pipelines.video.synthetic import PanClip, pan_frames
from pipelines.video.transform import forward_picture
from streampipe import gpu
from tests.builtin_jobs import run_job
from tests.gpu_harness import device_module, device_session

cp = device_module()
pytestmark = pytest.mark.gpu
FRAMES = pan_frames(2, 96, 64, shift=(2, -3)).y


@pytest.fixture(autouse=True)
def session():
    with device_session():
        yield


@pytest.mark.parametrize("rng", [0, 3, 8])
def test_sad_volume_kernel_is_exact(rng):
    host = sad_volume(FRAMES[1], FRAMES[0], rng)
    dev = sad_volume(cp.asarray(FRAMES[1]), cp.asarray(FRAMES[0]), rng, xp=cp)
    assert type(dev) is np.ndarray and np.array_equal(host, dev)  # integer sums: exact
    assert np.array_equal(full_search(FRAMES[1], FRAMES[0], rng)[0],
                          full_search(FRAMES[1], FRAMES[0], rng, xp=cp)[0])


@pytest.mark.parametrize("inverse", [False, True])
@cp.testing.numpy_cupy_allclose(rtol=0, atol=1e-10)
def test_dct_kernel_matches_numpy(inverse, xp):
    blocks = np.random.default_rng(2).integers(-255, 256, size=(300, 8, 8)).astype(np.float64)
    # Same float64 terms summed in another order on a GPU: differences of a few ulp of ~2000.
    return dct_blocks(xp.asarray(blocks), inverse=inverse, xp=xp)


def test_forward_picture_on_the_device_is_the_hosts():
    pic = pan_frames(1, 96, 64, shift=(0, 0)).frame(0)
    residual = tuple(p.astype(np.int16) - 128 for p in pic)
    dev = forward_picture(tuple(cp.asarray(p) for p in residual), cp)
    assert type(dev) is np.ndarray  # brought home explicitly with .get()
    np.testing.assert_allclose(dev, forward_picture(residual), rtol=0, atol=1e-10)


def _encode_on_device(clip, params):
    """The encoder's stages as the runtime runs them on GPU ranks: items (and feedback values)
    reach ME and transform through the wire codec's ``from_wire`` (NumPy arrays become device
    arrays) and leave through ``to_wire``."""
    wire = gpu.WireCodec(cp)
    hub = FeedbackHub()

    class DeviceContext(SerialContext):
        def feedback(self, seq):
            return wire.from_wire(super().feedback(seq))

    def ctx(name, device):
        return DeviceContext(hub, params=params.get(name, {}), stage=name, device=device,
                             xp=cp if device == "gpu" else np)

    me, tq, ec, sink = MotionEstimation(), TransformQuantize(), EntropyCoder(), StreamWriter()
    for st, name, device in ((me, "me", "gpu"), (tq, "transform", "gpu"),
                             (ec, "entropy", "cpu"), (sink, "sink", "cpu")):
        st.setup(ctx(name, device))
    for item in frame_items(clip, source_config(params["source"], open_input=False)):
        for st in (me, tq, ec, sink):
            st.ctx.seq = item["seq"]
        item = wire.to_wire(me.process(wire.from_wire(item)))
        item = wire.to_wire(tq.process(wire.from_wire(item)))
        sink.consume(ec.process(item))
    me.finish()
    sink.finish()
    return sink.stream_bytes()


@pytest.mark.parametrize("search", ["hierarchical", "full"])
def test_encoder_on_the_device_is_bit_exact(search):
    clip = PanClip(7, 80, 48, (1, 2))
    source = {"gop": 6, "bframes": 2, "quality": 60}
    host, recon, _ = encode_serial(clip, {**source, "search": search, "range": 3})
    dev = _encode_on_device(clip, {"source": source, "me": {"search": search, "range": 3}})
    assert dev == host
    assert all(a.equals(b) for a, b in zip(decode(dev), recon, strict=True))


def test_video_job_on_gpu_ranks_equals_the_cpu_run(tmp_path):
    # The shipped job with ME (2 replicas) and transform on GPU ranks: on the stand-in every
    # host/device mix-up raises in the ranks, and the stream must equal the CPU run's bytes.
    run = run_job("video", tmp_path, "stages.source.params.n_frames=9",
                  "stages.source.params.width=64", "stages.source.params.height=48",
                  "stages.source.params.gop=6", 'stages.sink.params.out="clip.spv"',
                  'stages.me.device="gpu"', 'stages.transform.device="gpu"', timeout=120)
    on_device = [r for r in run["ranks"] if r["stage"] in ("me", "transform")]
    assert len(on_device) == 3 and all(r.get("gpu_peak_bytes", 0) > 0 for r in on_device)
    # the CPU run's stream (the serial encoder's, which the MPI tests show to be the CPU job's)
    cpu, recon, _ = encode_serial(PanClip(9, 64, 48, (1, 2)),
                                  {"gop": 6, "quality": 75, "order": "min-bubble",
                                   "me_replicas": 2}, me_replicas=2)
    assert (tmp_path / "clip.spv").read_bytes() == cpu
