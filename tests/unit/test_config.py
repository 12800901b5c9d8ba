"""One configuration surface (streampipe/config.py): explicit argument > job file > environment
> default for every setting, one parser for every variable, every setting in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streampipe import config
from streampipe.job import JobError, apply_overrides, parse_job

BASE = {"pipeline": {"name": "c"},
        "stages": [{"name": "src", "uses": "tests.stages:Numbers"},
                   {"name": "sink", "uses": "tests.stages:Collect"}]}


def test_resolution_order():
    env = {"STREAMPIPE_FEEDBACK_TIMEOUT": "7"}
    job = {"feedback_timeout": 5.0}
    assert config.resolve("feedback_timeout", 3.0, job, env) == 3.0  # explicit wins
    assert config.resolve("feedback_timeout", None, job, env) == 5.0  # then the job file
    assert config.resolve("feedback_timeout", None, {}, env) == 7.0  # then the environment
    assert config.resolve("feedback_timeout", None, {}, {}) == 300.0  # then the default
    assert config.resolve("event_limit", 0, {"event_limit": 9}, {"STREAMPIPE_EVENT_LIMIT": "4"}
                          ) == 0  # an explicit 0 is a value, not "unset"


@pytest.mark.parametrize("name,text,pattern", [
    ("event_limit", "lots", r"STREAMPIPE_EVENT_LIMIT='lots': expected an integer"),
    ("event_limit", "-3", r"STREAMPIPE_EVENT_LIMIT='-3': must be >= 0, got -3"),
    ("feedback_timeout", "nan", r"STREAMPIPE_FEEDBACK_TIMEOUT='nan': must be a finite number"),
    ("spin_us", "1e9", r"STREAMPIPE_SPIN_US='1e9': must be <= 1000000"),
    ("progress", "maybe", r"STREAMPIPE_PROGRESS: expected 1/0, true/false"),
])
def test_bad_environment_values_name_the_variable(name, text, pattern):
    with pytest.raises(config.ConfigError, match=pattern):
        config.from_env(name, {config.setting(name).env: text})


def test_flags_parse_one_way():
    assert [config.parse_flag(t, "X") for t in ("1", "TRUE", "yes", "on")] == [True] * 4
    assert [config.parse_flag(t, "X") for t in ("", "0", "False", "no", "off")] == [False] * 5


def test_job_file_sets_runtime_knobs_and_checks_them():
    spec = parse_job(apply_overrides(BASE, ["pipeline.feedback_timeout=12",
                                            "pipeline.event_limit=5", "pipeline.spin_us=0"]))
    assert spec.settings == {"feedback_timeout": 12.0, "event_limit": 5, "spin_us": 0.0}
    assert spec.capacity == 8 and "capacity" not in spec.settings
    for override, pattern in (("pipeline.feedback_timeout=-1", r"pipeline\.feedback_timeout: "
                                                               r"must be >= 0\.001, got -1"),
                              ("pipeline.event_limit=1.5", r"pipeline\.event_limit: expected "
                                                           r"integer, got float"),
                              ("pipeline.mpiexec=\"x\"", r"pipeline\.mpiexec: unknown key")):
        with pytest.raises(JobError, match=pattern):
            parse_job(apply_overrides(BASE, [override]))


def test_readme_lists_every_setting():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", section, re.M)}
    assert set(rows) == {s.name for s in config.SETTINGS}
    for s in config.SETTINGS:
        assert (f"`{s.env}`" if s.env else "–") in rows[s.name], s.name
        job_column = rows[s.name].split("|")[2].strip()
        assert job_column == (f"`{s.name}`" if s.job else "–"), s.name
