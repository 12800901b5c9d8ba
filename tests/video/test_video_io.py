"""Frame I/O oracles (.y4m, .npy, .h5) and the job file run stage by stage in one process."""

from __future__ import annotations

import importlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipelines.video import (
    FrameError,
    FrameSource,
    decode,
    encode_serial,
    load_frames,
    read_y4m,
    write_y4m,
)
from pipelines.video.serial import FeedbackHub, SerialContext
from pipelines.video.synthetic import pan_frames

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

JOB = Path(__file__).resolve().parents[2] / "jobs" / "video.toml"
FRAMES = pan_frames(3, 32, 16, shift=(1, 1))


def test_y4m_round_trip_and_layout(tmp_path):
    path = tmp_path / "clip.y4m"
    write_y4m(path, FRAMES)
    data = path.read_bytes()
    header = b"YUV4MPEG2 W32 H16 F30:1 Ip A1:1 C420jpeg\n"
    assert data.startswith(header)
    frame_bytes = len(b"FRAME\n") + 32 * 16 + 2 * 16 * 8
    assert len(data) == len(header) + 3 * frame_bytes
    first = data[len(header) + 6 : len(header) + frame_bytes]
    # Planar I420 order: Y, then Cb (U), then Cr (V), each row-major.
    assert first[: 32 * 16] == FRAMES.y[0].tobytes()
    assert first[32 * 16 : 32 * 16 + 16 * 8] == FRAMES.u[0].tobytes()
    assert first[32 * 16 + 16 * 8 :] == FRAMES.v[0].tobytes()
    assert read_y4m(path).equals(FRAMES)


@pytest.mark.parametrize(
    "header,match",
    [
        (b"YUV4MPEG W32 H16 F30:1 Ip C420jpeg\n", "not a YUV4MPEG2 file"),
        (b"YUV4MPEG2 H16 F30:1 Ip C420jpeg\n", "field W"),
        (b"YUV4MPEG2 W32 H16 F30:1 Ip C444\n", "4:2:0"),
        (b"YUV4MPEG2 W40 H16 F30:1 Ip C420jpeg\n", "width 40 is not a positive multiple of 16"),
        (b"YUV4MPEG2 W32 H20 F30:1 Ip C420jpeg\n", "height 20 is not a positive multiple of 16"),
    ],
)
def test_y4m_bad_headers(tmp_path, header, match):
    path = tmp_path / "bad.y4m"
    path.write_bytes(header + b"FRAME\n" + bytes(32 * 16 * 3 // 2))
    with pytest.raises(FrameError, match=match):
        read_y4m(path)


def test_y4m_truncated(tmp_path):
    path = tmp_path / "clip.y4m"
    write_y4m(path, FRAMES)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(FrameError, match="frame 2 is truncated"):
        read_y4m(path)
    path.write_bytes(b"YUV4MPEG2 W32 H16 F30:1 Ip C420jpeg\nFRAMX\n" + bytes(768))
    with pytest.raises(FrameError, match="FRAME"):
        read_y4m(path)


def test_npy_and_h5_frames(tmp_path):
    # .npy/.h5 hold luma only: the clip gets neutral (128) chroma.
    np.save(tmp_path / "f.npy", FRAMES.y)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["video"] = FRAMES.y
    grey = np.full(FRAMES.u.shape, 128, np.uint8)
    for clip in (load_frames(tmp_path / "f.npy"), load_frames(tmp_path / "f.h5", dataset="video")):
        assert clip.equals((FRAMES.y, grey, grey))
    with pytest.raises(FrameError, match="no dataset 'frames'"):
        load_frames(tmp_path / "f.h5")
    np.save(tmp_path / "odd.npy", np.zeros((2, 16, 24), np.uint8))
    with pytest.raises(FrameError, match="width 24"):
        load_frames(tmp_path / "odd.npy")
    np.save(tmp_path / "wide.npy", np.full((2, 16, 16), 300, np.int32))
    with pytest.raises(FrameError, match="8-bit"):
        load_frames(tmp_path / "wide.npy")


def _stage(uses: str):
    module, cls = uses.split(":")
    return getattr(importlib.import_module(module), cls)()


def test_job_file_runs_stage_by_stage(tmp_path):
    """The job's stages, fed by hand in encode order, give the serial encoder's stream."""
    job = tomllib.loads(JOB.read_text())
    assert job["pipeline"]["ordered"] is True
    stages = {s["name"]: s for s in job["stages"]}
    assert list(stages) == ["source", "me", "transform", "entropy", "sink"]
    assert stages["me"]["replicas"] == 2
    assert stages["transform"]["feedback_to"] == "me"
    hub = FeedbackHub(stages["me"]["replicas"])
    inst = {}
    for name, spec in stages.items():
        params = dict(spec.get("params", {}))
        if name == "sink":
            params["out"] = str(tmp_path / "clip.spv")
        inst[name] = _stage(spec["uses"])
        inst[name].setup(SerialContext(hub, params=params, stage=name))
    me = [inst["me"]]
    for r in range(1, stages["me"]["replicas"]):
        extra = _stage(stages["me"]["uses"])
        extra.setup(SerialContext(hub, params=stages["me"]["params"], stage="me", replica=r))
        me.append(extra)
    for item in inst["source"].generate():
        m = me[item["seq"] % len(me)]
        for st in (m, inst["transform"], inst["entropy"], inst["sink"]):
            st.ctx.seq = item["seq"]
        out = inst["entropy"].process(inst["transform"].process(m.process(item)))
        inst["sink"].consume(out)
    for m in me:
        m.finish()
    inst["sink"].finish()
    stats = inst["sink"].result()
    stream = (tmp_path / "clip.spv").read_bytes()

    src = stages["source"]["params"]
    frames = pan_frames(src["n_frames"], src["width"], src["height"], tuple(src["shift"]))
    params = {**src, **stages["me"]["params"], **stages["transform"]["params"]}
    serial_stream, recon, serial_stats = encode_serial(frames, params)
    assert stream == serial_stream
    assert all(a.equals(b) for a, b in zip(decode(stream), recon, strict=True))
    assert stats["frames"] == 24 and stats["types"].count("I") == 2
    assert stats["psnr"] == serial_stats["psnr"]
    assert sum(len(s) for s in hub.stores) == 0


def test_bad_params_name_the_field():
    src = FrameSource()
    with pytest.raises(ValueError, match=r"stages.source.params.gop: must be an integer >= 1"):
        src.setup(SerialContext(FeedbackHub(), params={"gop": 0, "n_frames": 2}, stage="source"))
    with pytest.raises(ValueError, match=r"stages.source.params.n_frames: must be int"):
        src.setup(SerialContext(FeedbackHub(), params={"n_frames": "x"}, stage="source"))


def test_frame_source_reads_files_in_encode_order(tmp_path):
    frames = pan_frames(5, 32, 16, shift=(0, 1))
    write_y4m(tmp_path / "c.y4m", frames)
    src = FrameSource()
    params = {"source": str(tmp_path / "c.y4m"), "n_frames": 4, "gop": 4, "bframes": 1}
    src.setup(SerialContext(FeedbackHub(), params=params, stage="source"))
    items = list(src.generate())
    assert [(i["seq"], i["display"], i["type"]) for i in items] == [
        (0, 0, "I"), (1, 2, "P"), (2, 1, "B"), (3, 3, "P")
    ]
    for i in items:
        assert i["frame"].equals(frames.frame(i["display"]))
    assert items[2]["ref_seqs"] == (0, 1)
