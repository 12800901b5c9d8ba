"""Frame I/O oracles (.y4m read a frame at a time, headers checked field by field, tags carried
to the stream and back; .npy, .h5), parameter checks, and the job file run stage by stage."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipelines.video import (
    FrameError,
    FrameSource,
    decode,
    decode_frames,
    encode_serial,
    load_frames,
    open_clip,
    read_y4m,
    write_y4m,
)
from pipelines.video.frameio import Y4MHeader, Y4MReader, y4m_header
from pipelines.video.serial import FeedbackHub, SerialContext
from pipelines.video.stages import MotionEstimation, TransformQuantize
from pipelines.video.syntax import read_stream
from pipelines.video.synthetic import PanClip, pan_frames

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

JOB = Path(__file__).resolve().parents[2] / "jobs" / "video.toml"
FRAMES = pan_frames(3, 32, 16, shift=(1, 1))


def test_y4m_round_trip_and_layout(tmp_path):
    path = tmp_path / "clip.y4m"
    write_y4m(path, FRAMES, fps=(30000, 1001), color_range="FULL")
    data = path.read_bytes()
    header = b"YUV4MPEG2 W32 H16 F30000:1001 Ip A1:1 C420jpeg XCOLORRANGE=FULL\n"
    assert data.startswith(header)
    frame_bytes = len(b"FRAME\n") + 32 * 16 + 2 * 16 * 8
    assert len(data) == len(header) + 3 * frame_bytes
    first = data[len(header) + 6 : len(header) + frame_bytes]
    # Planar I420 order: Y, then Cb (U), then Cr (V), each row-major.
    assert first[: 32 * 16] == FRAMES.y[0].tobytes()
    assert first[32 * 16 : 32 * 16 + 16 * 8] == FRAMES.u[0].tobytes()
    assert first[32 * 16 + 16 * 8 :] == FRAMES.v[0].tobytes()
    assert read_y4m(path).equals(FRAMES)
    hdr, n = y4m_header(path)
    assert (hdr.fps, hdr.color_range, hdr.chroma, n) == ((30000, 1001), "FULL", "420jpeg", 3)


def _y4m(tmp_path, header: bytes, frames: int = 1, w: int = 32, h: int = 16) -> Path:
    path = tmp_path / "bad.y4m"
    size = w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)
    path.write_bytes(header + (b"FRAME\n" + bytes(size)) * frames)
    return path


@pytest.mark.parametrize(
    "header,match",
    [
        (b"YUV4MPEG W32 H16 F30:1 Ip C420jpeg\n", "not a YUV4MPEG2 file"),
        (b"YUV4MPEG2 H16 F30:1 Ip C420jpeg\n", "field W"),
        (b"YUV4MPEG2 W32 H16 Ip C420jpeg\n", r"field F \(frame rate\)"),
        (b"YUV4MPEG2 W32 H16 F30:0 Ip C420jpeg\n", "header F30:0"),
        (b"YUV4MPEG2 W32 H16 Fx Ip C420jpeg\n", "header Fx"),
        (b"YUV4MPEG2 W0 H16 F30:1 Ip C420jpeg\n", "width 0"),
        (b"YUV4MPEG2 W32 H99999 F30:1 Ip C420jpeg\n", "height 99999"),
        (b"YUV4MPEG2 W32 H16 F30:1 Ip C444\n", "C444: only 4:2:0 8-bit"),
        (b"YUV4MPEG2 W32 H16 F30:1 Ip C420p10\n", "C420p10"),
        (b"YUV4MPEG2 W32 H16 F30:1 It C420jpeg\n", "It: only progressive"),
        (b"YUV4MPEG2 W32 H16 F30:1 Ip Ax C420jpeg\n", "header Ax"),
        (b"YUV4MPEG2 W32 H16 F30:1 Ip C420jpeg XCOLORRANGE=PC\n", "XCOLORRANGE=PC"),
    ],
)
def test_y4m_bad_headers_name_the_field(tmp_path, header, match):
    path = _y4m(tmp_path, header)
    with pytest.raises(FrameError, match=match) as err:
        y4m_header(path)
    assert str(path) in str(err.value)
    # and the source's parameter check says the same before any rank starts
    with pytest.raises(ValueError, match=f"stages.source.params.source: .*{match}"):
        FrameSource.check_params({"source": str(path)}, "stages.source.params")


def test_y4m_any_size_and_frame_markers_with_parameters(tmp_path):
    # 33x17: odd sides (chroma 17x9); the second FRAME marker carries a parameter, so the
    # offsets come from a scan instead of arithmetic.
    clip = pan_frames(3, 33, 17, shift=(1, 1))
    body = [b"FRAME\n", b"FRAME Ixyz\n", b"FRAME\n"]
    path = tmp_path / "odd.y4m"
    path.write_bytes(b"YUV4MPEG2 W33 H17 F25:1 C420mpeg2\n" + b"".join(
        m + b"".join(p.tobytes() for p in clip.frame(d)) for d, m in enumerate(body)))
    got = read_y4m(path)
    assert got.equals(clip) and got.u.shape == (3, 9, 17)
    assert y4m_header(path)[0].chroma == "420mpeg2"


def test_y4m_truncated(tmp_path):
    path = tmp_path / "clip.y4m"
    write_y4m(path, FRAMES)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(FrameError, match="frame 2 is truncated"):
        y4m_header(path)
    path.write_bytes(b"YUV4MPEG2 W32 H16 F30:1 Ip C420jpeg\nFRAMX\n" + bytes(768))
    with pytest.raises(FrameError, match="FRAME"):
        read_y4m(path)


class _Spy(io.BufferedReader):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, n=-1):
        data = super().read(n)
        _Spy.read_bytes += len(data)
        return data


def test_reader_reads_one_frame_at_a_time(tmp_path, monkeypatch):
    # Bounded memory: opening reads the header line only, and each frame() reads that frame's
    # bytes and nothing else, whatever the clip's length.
    clip = pan_frames(12, 64, 48, shift=(1, 1))
    path = tmp_path / "long.y4m"
    write_y4m(path, clip)
    real_open = open

    def spy_open(p, mode="r", *a, **kw):
        f = real_open(p, mode, *a, **kw)
        return _Spy(f.detach()) if "b" in mode and "r" in mode else f

    monkeypatch.setattr("builtins.open", spy_open)
    _Spy.read_bytes = 0
    r = Y4MReader(path)
    assert _Spy.read_bytes < 200 and r.n_frames == 12
    frame = 64 * 48 * 3 // 2
    for d in (7, 0, 11):
        before = _Spy.read_bytes
        assert r.frame(d).equals(clip.frame(d))
        assert _Spy.read_bytes - before <= frame + 16
    r.close()


def test_npy_and_h5_frames(tmp_path):
    # .npy/.h5 hold luma only: the clip gets neutral (128) chroma; both are read per frame.
    np.save(tmp_path / "f.npy", FRAMES.y)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["video"] = FRAMES.y
    grey = np.full(FRAMES.u.shape, 128, np.uint8)
    for clip in (load_frames(tmp_path / "f.npy"), load_frames(tmp_path / "f.h5", dataset="video")):
        assert clip.equals((FRAMES.y, grey, grey))
    c = open_clip(tmp_path / "f.npy")
    assert isinstance(c._frames, np.memmap) and c.frame(2).equals(
        (FRAMES.y[2], grey[2], grey[2]))
    with pytest.raises(FrameError, match="no dataset 'frames'"):
        load_frames(tmp_path / "f.h5")
    np.save(tmp_path / "wide.npy", np.full((2, 16, 16), 300, np.int32))
    with pytest.raises(FrameError, match="8-bit"):
        load_frames(tmp_path / "wide.npy")


@pytest.mark.parametrize("color_range", ["FULL", "LIMITED", None])
def test_tags_are_carried_from_input_to_the_decoded_y4m(tmp_path, color_range):
    # Frame rate, pixel aspect, chroma siting and colour range reach the stream header and the
    # decoder's .y4m: a full-range clip stays full range (ffmpeg's PSNR reads it so).
    src = tmp_path / "in.y4m"
    header = Y4MHeader(32, 16, (24000, 1001), (4, 3), "420mpeg2", color_range)
    write_y4m(src, FRAMES, header=header)
    stream, _, _ = encode_serial(open_clip(src), {"quality": 90, "gop": 3})
    h, payloads = read_stream(io.BytesIO(stream))
    assert h.y4m() == header
    out = io.BytesIO()
    from pipelines.video.frameio import Y4MWriter

    with Y4MWriter(out, h.y4m()) as w:
        for pic in decode_frames(h, payloads):
            w.write(pic)
    line = out.getvalue().split(b"\n", 1)[0].decode()
    assert "F24000:1001" in line and "A4:3" in line and "C420mpeg2" in line
    assert ("XCOLORRANGE=" + color_range in line) if color_range else "XCOLOR" not in line


def _stage(uses: str):
    module, cls = uses.split(":")
    return getattr(importlib.import_module(module), cls)()


def test_job_file_runs_stage_by_stage(tmp_path):
    """The job's stages, fed by hand in encode order, give the serial encoder's stream."""
    job = tomllib.loads(JOB.read_text())
    assert job["pipeline"]["ordered"] is True
    stages = {s["name"]: s for s in job["stages"]}
    assert list(stages) == ["source", "me", "transform", "entropy", "sink"]
    assert stages["me"]["replicas"] == stages["source"]["params"]["me_replicas"] == 2
    assert stages["transform"]["feedback_to"] == "me"
    hub = FeedbackHub(stages["me"]["replicas"])
    inst = {}
    for name, spec in stages.items():
        params = dict(spec.get("params", {}))
        if name == "sink":
            params["out"] = str(tmp_path / "clip.spv")
        if name == "source":  # the job's clip, cut to one GOP and the next I frame
            spec["params"]["n_frames"] = params["n_frames"] = 13
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
    frames = PanClip(src["n_frames"], src["width"], src["height"], tuple(src["shift"]))
    params = {**{k: v for k, v in src.items() if k not in ("source", "n_frames", "width",
                                                            "height", "shift")},
              **stages["me"]["params"]}
    serial_stream, recon, serial_stats = encode_serial(frames, params)
    assert stream == serial_stream
    assert all(a.equals(b) for a, b in zip(decode(stream), recon, strict=True))
    assert stats["color_range"] == "FULL"  # the synthetic pan is JFIF (full-range) Y'CbCr
    assert stats["frames"] == 13 and stats["types"].count("I") == 2
    assert stats["psnr"] == serial_stats["psnr"]
    assert sum(len(s) for s in hub.stores) == 0


def test_bad_params_name_the_field():
    check = FrameSource.check_params
    with pytest.raises(ValueError, match=r"stages.source.params.gop: must be in 1"):
        check({"gop": 0, "n_frames": 2}, "stages.source.params")
    with pytest.raises(ValueError, match=r"stages.source.params.n_frames: must be int"):
        check({"n_frames": "x"}, "stages.source.params")
    with pytest.raises(ValueError, match=r"params.order: must be one of anchors-first"):
        check({"order": "fastest"}, "params")
    with pytest.raises(ValueError, match=r"params.source: .*no such file"):
        check({"source": "missing.y4m"}, "params")
    with pytest.raises(ValueError, match=r"params.source: must be 'synthetic' or a"):
        check({"source": "clip.mp4"}, "params")
    with pytest.raises(ValueError, match=r"params.nframes: unknown parameter"):
        check({"nframes": 3}, "params")
    # a parameter that moved is refused with a hint, never silently ignored
    with pytest.raises(ValueError, match=r"transform.params.quality: .*source parameter"):
        TransformQuantize.check_params({"quality": 50}, "stages.transform.params")
    with pytest.raises(ValueError, match=r"me.params.search: must be one of hierarchical"):
        MotionEstimation.check_params({"search": "diamond"}, "stages.me.params")


def test_frame_source_reads_files_in_encode_order(tmp_path):
    frames = pan_frames(5, 32, 16, shift=(0, 1))
    write_y4m(tmp_path / "c.y4m", frames)
    src = FrameSource()
    params = {"source": str(tmp_path / "c.y4m"), "n_frames": 4, "gop": 4, "bframes": 1}
    src.setup(SerialContext(FeedbackHub(), params=params, stage="source"))
    items = list(src.generate())
    src.close()
    assert [(i["seq"], i["display"], i["type"]) for i in items] == [
        (0, 0, "I"), (1, 2, "P"), (2, 1, "B"), (3, 3, "P")
    ]
    for i in items:  # 32x16 is whole macroblocks: the picture is the file's frame
        assert i["frame"].equals(frames.frame(i["display"]))
    assert items[2]["ref_seqs"] == (0, 1) and items[2]["distances"] == (1, 1)
    assert items[0]["header"].n_frames == 4


def test_sink_writes_in_order_as_payloads_arrive(tmp_path):
    # Bounded memory: the sink keeps only payloads that arrived before their predecessors.
    from pipelines.video.stages import StreamWriter
    from pipelines.video.syntax import StreamHeader

    sink = StreamWriter()
    out = tmp_path / "s.spv"
    sink.setup(SerialContext(FeedbackHub(), params={"out": str(out)}, stage="sink"))
    header = StreamHeader(32, 16, n_frames=4)
    item = {"type": "P", "bits": 24, "psnr": {}, "scale": 50, "header": header}
    sizes = []
    for seq in (1, 0, 3, 2):
        sink.consume({**item, "seq": seq, "display": seq, "payload": bytes([seq]) * 3})
        sizes.append((len(sink._early), sink._bytes))  # bytes handed to the file so far
    sink.finish()
    hdr = 27  # SPV3 header bytes
    assert sizes == [(1, hdr), (0, hdr + 2 * 7), (1, hdr + 2 * 7), (0, hdr + 4 * 7)]
    assert out.stat().st_size == hdr + 4 * 7
    with pytest.raises(ValueError, match=r"seq \[2, 3\] never came"):
        s2 = StreamWriter()
        s2.setup(SerialContext(FeedbackHub(), params={}, stage="sink"))
        s2.consume({**item, "seq": 0, "display": 0, "payload": b"x"})
        s2.consume({**item, "seq": 1, "display": 1, "payload": b"x"})
        s2.finish()
