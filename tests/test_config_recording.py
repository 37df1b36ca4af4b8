"""The configuration's ``recording`` section and each stream's ``interval``, ``motion`` and ``record`` (#27 x
#26 x #28): the flags' defaults, the flags' checks (one line each with its key path, every problem at once,
exit 2 from the command), the flags over the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from boxconfig.config import to_data
from boxconfig.flags import effective_config, given_flags
from boxconfig.loading import check_config
from boxconfig.problems import ConfigError
from boxconfig.recording_section import check_trigger_classes, record_options
from recording.options import RecordOptions
from streams.gating import GateOptions
from streams.motion import MotionOptions
from tests.test_config import DEFAULTS, PARSER, ROOT, good, problems


def recorded() -> dict:
    data = good()
    data["recording"] = {"dir": "clips"}
    data["streams"][1].update(interval=3, record=False, motion={"enabled": True, "max_skip": 4,
                                                                "mask": "0,0 10,0 10,10"})
    return data


def test_defaults_are_the_flags_and_the_librarys(tmp_path):
    config = check_config(recorded(), "box.yaml", DEFAULTS, tmp_path)
    door, yard = config.streams
    section = config.recording
    assert (section.record_on, section.pre_seconds, section.post_seconds) == (["all"], RecordOptions.pre_s,
                                                                       RecordOptions.post_s)
    assert (section.retain_days, section.retain_gb) == (None, None)
    assert door.interval == GateOptions.interval and not door.motion.enabled
    assert door.motion.threshold == MotionOptions.threshold and yard.motion.threshold == MotionOptions.threshold
    assert (yard.interval, yard.motion.max_skip, yard.motion.enabled) == (3, 4, True)
    assert config.recorded(door) and not config.recorded(yard)
    assert not (tmp_path / "clips").exists()  # checking makes nothing
    options = record_options(config, "box.yaml")
    assert options.folder == tmp_path / "clips" and options.folder.is_dir()  # relative to the file; made to run
    assert check_config(to_data(config), "box.yaml", DEFAULTS, tmp_path) == config  # written back, the same


def test_every_bad_value_one_line_with_its_key_path(tmp_path):
    (tmp_path / "taken.txt").write_text("not a folder")
    data = recorded()
    data["recording"] = {"dir": "taken.txt", "pre_seconds": -1, "retain_gb": 0, "record_on": ["explosion"],
                         "post_seconds": "5"}
    data["streams"][0].update(interval=0, motion={"threshold": 300, "max_skip": 0})
    data["streams"][1]["motion"] = {"mask": "1,2 3,4"}
    data["streams"].append({"name": "gate", "source": "1", "model": "shapes", "motion": {"mask": 5,
                                                                                         "threshold": 2.5}})
    lines = problems(data, tmp_path)
    expected = ["box.yaml: recording.post_seconds: give a number (got '5')",
                "box.yaml: streams[2].motion.mask: give text or null (got 5)",
                "box.yaml: streams[2].motion.threshold: give a whole number (got 2.5)",
                "box.yaml: streams[0].interval: below 1; ",
                "box.yaml: streams[0].motion.threshold: not a grey-level difference; give 1 to 255 (got 300)",
                "box.yaml: streams[0].motion.max_skip: below 1; ",
                "box.yaml: streams[1].motion.mask: '1,2 3,4' has 2 points; give at least 3",
                "box.yaml: recording.record_on: not a trigger; ",
                "box.yaml: recording.pre_seconds: seconds must be a finite number >= 0; ",
                "box.yaml: recording.retain_gb: a retention limit must be more than 0 GB; ",
                f"box.yaml: recording.dir: {tmp_path / 'taken.txt'} exists and is not a folder; "]
    for start in expected:
        assert sum(text.startswith(start) for text in lines) == 1, (start, lines)
    assert len(lines) == len(expected), lines


def test_a_class_trigger_names_a_class_of_a_model(tmp_path):
    data = recorded()
    data["recording"]["record_on"] = ["line_crossed", "class:zebra"]
    config = check_config(data, "box.yaml", DEFAULTS, tmp_path)  # (no model loaded yet: not matched)
    check_trigger_classes(config, "box.yaml", ["person", "zebra"])
    with pytest.raises(ConfigError) as caught:
        check_trigger_classes(config, "box.yaml", ["person", "car"])
    assert caught.value.lines == ["box.yaml: recording.record_on: the model has no class 'zebra'; use one of car, "
                                  "person (got class:zebra)"]


def test_flags_override_the_file():
    given = given_flags(PARSER, ["--record", "/tmp/elsewhere", "--pre-seconds", "2", "--record-on", "zone_enter",
                                 "--interval", "yard=2", "--motion", "--motion-threshold", "40"])
    config = effective_config(recorded(), given, "box.yaml", DEFAULTS)
    door, yard = config.streams
    assert (config.recording.dir, config.recording.pre_seconds, config.recording.record_on) == ("/tmp/elsewhere", 2,
                                                                                         ["zone_enter"])
    assert (door.interval, yard.interval) == (1, 2)  # NAME=N: that stream only
    assert door.motion.enabled and door.motion.threshold == yard.motion.threshold == 40
    assert yard.motion.max_skip == 4  # what no flag set stays the file's
    assert [s.interval for s in effective_config(recorded(), given_flags(PARSER, ["--interval", "5"]), "box.yaml",
                                                 DEFAULTS).streams] == [5, 5]
    with pytest.raises(ConfigError) as caught:
        effective_config(recorded(), given_flags(PARSER, ["--post-seconds", "-1"]), "box.yaml", DEFAULTS)
    assert caught.value.lines == ["box.yaml: recording.post_seconds: seconds must be a finite number >= 0; give "
                                  "e.g. --post-seconds 5 (got -1.0) (set by --post-seconds)"]


def test_the_command_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "box.yaml"
    path.write_text("models: {m: {path: m.xml}}\nstreams:\n  - {name: a, source: '0', interval: 0}\n"
                    "recording: {dir: clips, retain_days: -3}\n")
    result = subprocess.run([sys.executable, "-m", "boxconfig", "check", str(path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: {path}: streams[0].interval: below 1")
    assert lines[1].startswith(f"error: {path}: recording.retain_days: a retention limit must be more than 0 days")
    assert not (tmp_path / "clips").exists()


def test_without_a_folder_nothing_is_recorded(tmp_path: Path):
    config = check_config(good(), "box.yaml", DEFAULTS, tmp_path)
    assert record_options(config, "box.yaml") is None and not any(config.recorded(s) for s in config.streams)
