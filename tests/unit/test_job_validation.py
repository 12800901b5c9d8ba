"""Job validation that must refuse before any rank starts (no MPI): odd and huge values, feedback
edges, checkpoint promises, stage files relative to the job, the rank limit of ``streampipe run``.

Each case breaks one field and asserts the one-line error names it (the oracle is the field the
test broke); ``main([...])`` runs the command line in-process, so a refusal that happened only
after launching would show as a launch attempt, not as the error.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import streampipe as sp
from streampipe import launch
from streampipe.cli import main
from streampipe.job import INT_MAX, JobError, instantiate, load_job, parse_job

BASE = {
    "pipeline": {"name": "t", "capacity": 4},
    "stages": [
        {"name": "src", "uses": "tests.stages:Numbers"},
        {"name": "sq", "uses": "tests.stages:Square", "replicas": 2},
        {"name": "sink", "uses": "tests.stages:Collect"},
    ],
}


class HalfDurable(sp.Sink):
    """Saves a checkpoint but cannot restore one."""

    def consume(self, item):
        pass

    def checkpoint(self):
        return 0


def plain_function(x):
    return x


class Plain(sp.Source):
    def generate(self):
        yield 1


def job(**edits) -> dict:
    t = copy.deepcopy(BASE)
    for k, v in edits.items():
        where, key = k.split("__")
        node = t["pipeline"] if where == "pipeline" else t["stages"][int(where[1:])]
        node[key] = v
    return t


@pytest.mark.parametrize("table,pattern", [
    (job(pipeline__capacity=99999999999999999999),
     r"pipeline\.capacity: must be <= 2147483647, got 99999999999999999999"),
    (job(s1__capacity=2**31), r"stages\[1\]\.capacity: must be <= 2147483647"),
    (job(pipeline__batch=2**40), r"pipeline\.batch: must be <= 2147483647"),
    (job(s1__replicas=2**31), r"stages\[1\]\.replicas: must be <= 2147483647"),
    (job(s1__group=2**33), r"stages\[1\]\.group: must be <= 2147483647"),
    (job(s1__replicas=2**30, s1__group=2), r"stages: the job needs \d+ ranks, more than MPI"),
    (job(s1__timeout=float("nan")), r"stages\[1\]\.timeout: must be a finite number > 0"),
    (job(s1__timeout=float("inf")), r"stages\[1\]\.timeout: must be a finite number > 0"),
    (job(s1__name="a/b"), r"stages\[1\]\.name: must be letters, digits, '_' or '-'"),
    (job(s1__name="a.b"), r"stages\[1\]\.name: must be letters"),
    (job(s1__name=""), r"stages\[1\]\.name: must be letters"),
    (job(pipeline__name="../x"), r"pipeline\.name: must be letters, digits, '_' or '-' or '\.'"),
    (job(s1__uses="tests.stages:np"),
     r"stages\[1\]\.uses \(sq\): module 'numpy' is not a streampipe Stage"),
    (job(s1__uses="tests.stages:time"), r"module 'time' is not a streampipe Stage"),
    (job(s1__uses="tests.unit.test_job_validation:plain_function"),
     r"stages\[1\]\.uses \(sq\): plain_function is a plain function; decorate it with "
     r"@streampipe\.stage"),
])
def test_odd_values_are_refused_naming_the_field(table, pattern):
    with pytest.raises(JobError, match=pattern):
        parse_job(table)


def test_largest_allowed_values_pass():
    spec = parse_job(job(pipeline__capacity=INT_MAX, pipeline__batch=INT_MAX, s1__timeout=1e9))
    assert spec.capacity == INT_MAX


def test_two_feedback_producers_for_one_target_are_refused():
    t = job(s1__feedback_to="src")
    t["stages"].insert(2, {"name": "sq2", "uses": "tests.stages:Square", "feedback_to": "src"})
    with pytest.raises(JobError, match=r"stages\[2\]\.feedback_to: stage 'sq' already feeds back "
                                       r"to 'src'"):
        parse_job(t)
    t["stages"][2]["feedback_to"] = "sq"  # a chain of feedback edges to different stages is fine
    assert parse_job(t).stages[2].feedback_to == "sq"


@pytest.mark.parametrize("sink,missing", [
    ("tests.stages:Collect", r"Sink\.checkpoint\(\) and Sink\.restore\(\)"),
    ("tests.unit.test_job_validation:HalfDurable", r"Sink\.restore\(\)"),
])
def test_checkpoint_needs_a_sink_that_saves_and_restores(sink, missing):
    t = job(pipeline__checkpoint=True, s2__uses=sink)
    with pytest.raises(JobError, match=r"pipeline\.checkpoint: sink \w+ does not override "
                                       + missing + r", so a resumed run would lose"):
        parse_job(t)
    t["pipeline"]["checkpoint"] = False  # without the promise the same sink is fine
    parse_job(t)


def test_checkpoint_needs_a_source_that_seeks():
    t = job(pipeline__checkpoint=True, s2__uses="tests.stages_durable:DurableFile",
            s0__uses="tests.unit.test_job_validation:Plain")
    with pytest.raises(JobError, match=r"pipeline\.checkpoint: source Plain cannot resume: it does "
                                       r"not override Source\.seek\(seq\)"):
        parse_job(t)
    t["stages"][0]["uses"] = "tests.stages:Numbers"
    assert parse_job(t).checkpoint


STAGES = """
import streampipe as sp
class Here(sp.Stage):
    where = "{where}"
    def process(self, x):
        return x
"""


def test_stage_file_is_relative_to_the_job_not_the_working_directory(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "mystages.py").write_text(STAGES.format(where="job folder"))
    (tmp_path / "mystages.py").write_text(STAGES.format(where="working directory"))
    (sub / "job.toml").write_text(
        '[[stages]]\nname = "src"\nuses = "tests.stages:Numbers"\n'
        '[[stages]]\nname = "mid"\nuses = "mystages.py:Here"\n'
        '[[stages]]\nname = "sink"\nuses = "tests.stages:Collect"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    spec = load_job("sub/job.toml")
    # what a rank builds (instantiate) is the class validation checked: the job folder's
    assert instantiate(spec.stages[1], "stages[1]").where == "job folder"


def test_cli_prints_one_line_for_every_validation_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[pipeline]\ncapacity = 99999999999999999999\n[[stages]]\nname = "src"\n'
                   'uses = "tests.stages:Numbers"\n[[stages]]\nname = "sink"\n'
                   'uses = "tests.stages:np"\n')
    for argv in (["run", str(bad)], ["plan", str(bad)],
                 ["run", str(bad), "--set", "pipeline.capacity=4"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"streampipe {argv[0]}: error: "), err
        assert "Traceback" not in err


def test_run_refuses_far_more_ranks_than_cores_unless_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STREAMPIPE_MAX_RANKS", raising=False)
    n = launch.rank_limit() + 1
    jobf = tmp_path / "many.toml"
    jobf.write_text('[pipeline]\nname = "many"\n[[stages]]\nname = "src"\n'
                    'uses = "tests.stages:Numbers"\n[[stages]]\nname = "sq"\n'
                    f'uses = "tests.stages:Square"\nreplicas = {n - 2}\n[[stages]]\n'
                    'name = "sink"\nuses = "tests.stages:Collect"\n')
    started = []
    monkeypatch.setattr(launch, "launch", lambda *a, **k: started.append(a) or 0)
    monkeypatch.setattr(launch, "under_mpi", lambda: False)
    assert main(["run", str(jobf), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the job needs {n} ranks" in err and f"--max-ranks {n}" in err
    assert f"STREAMPIPE_MAX_RANKS={n}" in err and not started
    # asked for, by flag or by environment: launched with all n ranks
    for how in (["--max-ranks", str(n)], []):
        if not how:
            monkeypatch.setenv("STREAMPIPE_MAX_RANKS", str(n))
        main(["run", str(jobf), "--quiet", "--out", str(tmp_path / "x.h5"), *how])
        assert started and started[-1][0] == n
    monkeypatch.setenv("STREAMPIPE_MAX_RANKS", "lots")
    assert main(["run", str(jobf), "--quiet"]) == 2
    assert "STREAMPIPE_MAX_RANKS='lots': expected an integer" in capsys.readouterr().err


class Scaled(sp.Stage):
    """Multiplies by params.k, which must be a positive number (checked at load time)."""

    @classmethod
    def check_params(cls, params, where):
        k = params.get("k", 1)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 0:
            raise ValueError(f"{where}.k: must be a positive number, got {k!r}")

    def setup(self, ctx):
        self.k = ctx.params.get("k", 1)

    def process(self, x):
        return self.k * x


def test_a_stage_checks_its_own_params_when_the_job_loads():
    t = job(s1__uses="tests.unit.test_job_validation:Scaled")
    t["stages"][1]["params"] = {"k": 2.5}
    parse_job(t)
    t["stages"][1]["params"] = {"k": -1}
    with pytest.raises(JobError, match=r"^stages\.sq\.params\.k: must be a positive number, "
                                       r"got -1$"):
        parse_job(t)


class Careless(sp.Stage):
    """A check that compares before it checks the type: a str ``k`` raises TypeError."""

    @classmethod
    def check_params(cls, params, where):
        if params.get("k", 1) <= 0:
            raise ValueError(f"{where}.k: must be > 0")

    def process(self, x):
        return x


def test_a_check_that_fails_otherwise_still_names_the_params():
    t = job(s1__uses="tests.unit.test_job_validation:Careless")
    t["stages"][1]["params"] = {"k": "abc"}
    with pytest.raises(JobError, match=r"^stages\.sq\.params: TypeError: '<=' not supported "):
        parse_job(t)


def test_builtin_params_are_checked_before_any_rank_starts(capsys):
    # the video job's motion search has two choices; a third is refused by the launcher with
    # one line (no traceback), naming the field as --set spells it
    rc = main(["run", str(Path(__file__).parents[2] / "jobs" / "video.toml"),
               "--set", 'stages.me.params.search="diamond"'])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "streampipe run: error: stages.me.params.search: must be one of hierarchical, full, "
        "got 'diamond'"]


def test_a_bad_setting_in_the_environment_is_refused_before_launch(capsys, monkeypatch):
    monkeypatch.setenv("STREAMPIPE_MAX_DELAY", "soon")
    rc = main(["run", str(Path(__file__).parents[2] / "jobs" / "var.toml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["streampipe run: error: STREAMPIPE_MAX_DELAY='soon': expected a "
                               "number"]
