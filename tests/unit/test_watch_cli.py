"""``streampipe watch`` when there is nothing (more) to watch: each case ends with one clear line
and an exit code instead of waiting forever or saying nothing (no MPI: the files a run writes are
made by hand, the way streampipe.live and streampipe.runfile write them)."""

from __future__ import annotations

import json
import os
import threading
import time

import h5py

from streampipe.cli import main
from streampipe.metrics import STATES

END_OK = '{"t": 0.4, "end": true, "status": "ok"}\n'
REC = {"t": 1, "stages": {"w": {"items": 3, "rate": 3.0, "held": 0, **dict.fromkeys(STATES, 0.0)}},
       "bottleneck": "w"}


def watch(*argv):
    t0 = time.monotonic()
    rc = main(["watch", *map(str, argv)])
    return rc, time.monotonic() - t0


def test_a_folder_that_does_not_exist_is_an_error_at_once(tmp_path, capsys):
    rc, dt = watch(tmp_path / "no" / "r.h5")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and dt < 1 and err.count("\n") == 0
    assert err.startswith("streampipe watch: error: no folder") and str(tmp_path / "no") in err


def test_nothing_there_waits_only_up_to_wait(tmp_path, capsys):
    rc, dt = watch(tmp_path / "r.h5", "--wait", "0.5")
    err = capsys.readouterr().err
    assert rc == 2 and 0.5 <= dt < 5
    assert "waiting up to 0.5 s" in err and "no run wrote" in err and "within 0.5 s" in err


def test_a_run_that_starts_while_waiting_is_followed_to_its_end(tmp_path, capsys):
    live = tmp_path / "r.h5.live.jsonl"

    def run():
        time.sleep(0.4)
        live.write_text(json.dumps(REC) + "\n" + '{"t": 2, "end": true, "status": "failed"}\n')

    th = threading.Thread(target=run)
    th.start()
    rc, dt = watch(tmp_path / "r.h5", "--wait", "10")
    th.join()
    out = capsys.readouterr().out
    assert rc == 1 and dt < 8 and out.startswith("t=1s w 3.0/s")


def test_a_finished_run_without_a_live_file_says_so(tmp_path, capsys):
    for status, code in (("ok", 0), ("failed", 1)):
        run = tmp_path / f"{status}.h5"
        with h5py.File(run, "w") as f:
            f.attrs["status"] = status
        rc, dt = watch(run)
        err = capsys.readouterr().err
        assert rc == code and dt < 2
        assert f"is a finished run (status {status}) with no live file" in err


def test_a_run_that_ended_before_its_first_record_says_so(tmp_path, capsys):
    (tmp_path / "r.h5.live.jsonl").write_text(END_OK)
    rc, _ = watch(tmp_path / "r.h5")
    got = capsys.readouterr()
    assert rc == 0 and got.out == "" and "ended (status ok) before its first live record" in got.err
    # with a record, no such note
    (tmp_path / "r.h5.live.jsonl").write_text(json.dumps(REC) + "\n" + END_OK)
    assert watch(tmp_path / "r.h5")[0] == 0 and capsys.readouterr().err == ""


def test_a_live_file_gone_silent_without_its_end_gives_up_after_wait(tmp_path, capsys):
    live = tmp_path / "r.h5.live.jsonl"
    live.write_text(json.dumps(REC) + "\n")  # a run killed with SIGKILL never writes its end
    os.utime(live, (time.time() - 120, time.time() - 120))
    rc, dt = watch(live, "--wait", "60")
    got = capsys.readouterr()
    assert rc == 1 and dt < 2 and got.out.startswith("t=1s")
    assert "no new record for 60 s and no end marker" in got.err
