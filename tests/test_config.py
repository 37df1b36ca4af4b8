"""The box configuration file (boxconfig/, issue #27): every bad-configuration row of the issue reported as one
line with its key path, all at once, exit 2 from the command; defaults are the camera flags'; flags override
the file; secrets redacted; write-back then load gives the same configuration; the reload's difference."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from apps.camera import build_parser
from boxconfig.changes import config_changes
from boxconfig.config import to_data
from boxconfig.defaults import flag_defaults
from boxconfig.flags import effective_config, given_flags
from boxconfig.loading import check_config, load_config, read_config_data
from boxconfig.problems import ConfigError
from boxconfig.redaction import REDACTED, redacted
from boxconfig.writeback import write_config
from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PARSER = build_parser()
DEFAULTS = flag_defaults(PARSER)
DOOR_ZONES = {"coordinates": "normalized",
              "zones": [{"name": "waiting", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], "classes": ["person"]}],
              "lines": [{"name": "entry", "points": [[0, 0.5], [1, 0.5]]}]}


def good() -> dict:
    return {"models": {"shapes": {"path": "outputs/ssdlite320_shapes_int8.xml", "score_threshold": 0.2},
                       "people": {"path": "http://triton:8000/ssd", "runtime": "kserve"}},
            "streams": [{"name": "door", "source": "rtsp://admin:hunter2@cam1/live", "model": "shapes",
                         "zones": DOOR_ZONES, "keep_classes": ["person"]},
                        {"name": "yard", "source": "0", "model": "people", "tracking": {"enabled": True}}],
            "webview": {"port": 8080, "token": "s3cret-token"},
            "sinks": {"webhook": "http://hooks:9000/events?key=abc123", "mqtt": {"broker": "broker:1883/cams",
                                                                                 "username": "box",
                                                                                 "password": "mqtt-pw"}}}


def problems(data, tmp_path=Path(".")) -> list:
    with pytest.raises(ConfigError) as caught:
        check_config(data, "box.yaml", DEFAULTS, tmp_path)
    lines = caught.value.lines
    assert all("\n" not in text and text.startswith("box.yaml: ") for text in lines)
    return lines


def test_a_good_file_loads_with_the_flags_defaults():
    config = check_config(good(), "box.yaml", DEFAULTS)
    door, yard = config.streams
    assert door.model == "shapes" and yard.model == "people" and door.keep_classes == ["person"]
    assert door.tracks and yard.tracks  # zones imply tracking; yard asks for it
    assert door.tracking.high_score == PARSER.get_default("track_high_score")
    assert door.source_timeout_s == PARSER.get_default("source_timeout")
    assert door.max_wait_ms == PARSER.get_default("max_wait") > 0
    assert config.models["shapes"].batch_timeout_ms == PARSER.get_default("batch_timeout")
    assert config.sinks.counts_every_s == PARSER.get_default("counts_every")
    assert config.webview.header_timeout_s == PARSER.get_default("serve_header_timeout")
    assert config.csi.width == PARSER.get_default("csi_width")
    assert [s.name for s in config.streams_of("people")] == ["yard"]


def test_unknown_key_with_a_suggestion():
    data = good()
    data["streams"][1]["sorce"] = "1"
    data["webveiw"] = {}
    lines = problems(data)
    assert "box.yaml: streams[1].sorce: unknown key; did you mean 'source'?" in lines
    assert "box.yaml: webveiw: unknown key; did you mean 'webview'?" in lines


def test_wrong_type():
    data = good()
    data["streams"][0]["max_frames"] = "ten"
    data["streams"][1]["tracking"]["min_hits"] = 2.0
    data["models"]["shapes"]["batch_timeout_ms"] = float("nan")
    lines = problems(data)
    assert "box.yaml: streams[0].max_frames: give a whole number (got 'ten')" in lines
    assert "box.yaml: streams[1].tracking.min_hits: give a whole number (got 2.0)" in lines
    assert "box.yaml: models.shapes.batch_timeout_ms: give a number (got nan)" in lines


def test_missing_source():
    data = good()
    del data["streams"][1]["source"]
    assert problems(data) == ["box.yaml: streams[1].source: missing; this key is required here"]


def test_duplicate_stream_names():
    data = good()
    data["streams"][1]["name"] = "door"
    assert problems(data) == ["box.yaml: streams[1].name: 'door' is the name of streams[0] too; every stream "
                              "needs its own name"]


def test_a_zone_for_an_unknown_stream():
    data = good()
    data["zones"] = {"streams": {"gate": {"lines": [{"name": "l", "points": [[0, 0], [9, 9]]}]}}}
    [text] = problems(data)
    assert text.startswith("box.yaml: zones.streams.gate: stream 'gate' is not one of this run's streams ('door', "
                           "'yard')")


def test_a_stream_naming_an_unknown_model():
    data = good()
    data["streams"][0]["model"] = "shape"
    assert problems(data) == ["box.yaml: streams[0].model: no model is named 'shape'; did you mean 'shapes'?"]


def test_every_problem_at_once_and_exit_2_from_the_command(tmp_path):
    data = good()
    data["streams"][1]["sorce"] = data["streams"][1].pop("source")
    data["streams"][0]["model"] = "shape"
    data["streams"].append({"name": "door", "source": "1", "model": "people",
                            "zones": {"lines": [{"name": "l", "points": [[0, 0]]}]}})
    data["webview"]["port"] = "8080"
    path = tmp_path / "box.json"
    path.write_text(json.dumps(data))
    run = subprocess.run([sys.executable, "-m", "boxconfig", "check", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.splitlines()
    expected = [f"error: {path}: streams[1].sorce: unknown key; did you mean 'source'?",
                f"error: {path}: streams[1].source: missing; this key is required here",
                f"error: {path}: webview.port: give a whole number or null (got '8080')",
                f"error: {path}: streams[0].model: no model is named 'shape'; did you mean 'shapes'?",
                f"error: {path}: streams[2].name: 'door' is the name of streams[0] too; every stream needs its own "
                "name",
                f"error: {path}: streams[2].zones.lines[0].points: a line takes exactly 2 points (got 1); use a zone "
                "for more"]
    assert sorted(lines) == sorted(expected)


def test_the_command_accepts_a_good_file(tmp_path):
    path = tmp_path / "box.json"
    path.write_text(json.dumps(good()))
    run = subprocess.run([sys.executable, "-m", "boxconfig", "check", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{path}: OK: 2 model(s), 2 stream(s)"


@pytest.mark.parametrize("name", ["../etc", "a/b", "cam\x07", ".hidden", "", "x" * 65])
def test_stream_names_safe_for_urls_and_file_names(name):
    data = good()
    data["streams"][0]["name"] = name
    [text] = [t for t in problems(data) if "streams[0].name" in t]
    assert "use letters, digits, '_', '.', '-'" in text


def test_a_zones_file_named_by_a_stream_is_checked_by_the_zone_files_code(tmp_path):
    (tmp_path / "door.yaml").write_text("lines:\n  - {name: entry, points: [[0, 0], [0, 0]]}\n")
    data = good()
    data["streams"][0]["zones"] = "door.yaml"
    assert problems(data, tmp_path) == ["box.yaml: streams[0].zones: door.yaml: lines[0].points: the line's two "
                                        "points are the same; give two distinct points"]
    (tmp_path / "door.yaml").write_text("lines:\n  - {name: entry, points: [[0, 0], [5, 0]]}\n")
    assert check_config(data, "box.yaml", DEFAULTS, tmp_path).streams[0].zones == "door.yaml"


def test_yaml_is_read_as_data_only(tmp_path):
    path = tmp_path / "box.yaml"
    path.write_text("models:\n  m: &m {path: a.onnx}\n  n: *m\nstreams: [{name: a, source: '0', model: m}]\n")
    with pytest.raises(UserError, match=r"line 3, column 6: aliases \(\*m\) are not read"):
        load_config(path, DEFAULTS)


def test_flags_override_the_file_and_only_the_flags_given():
    given = given_flags(PARSER, ["--model", "x.onnx", "--score-threshold", "0.4", "--track-min-hits", "5",
                                 "--serve", "0.0.0.0:9000"])
    assert given == {"model": "x.onnx", "score_threshold": 0.4, "track_min_hits": 5, "serve": "0.0.0.0:9000"}
    data = good()
    del data["models"]["people"]
    data["streams"][1]["model"] = "shapes"
    config = effective_config(data, given, "box.yaml", DEFAULTS)
    assert config.models["shapes"].path == os.path.abspath("x.onnx")
    assert config.models["shapes"].score_threshold == 0.4 and {s.score_threshold for s in config.streams} == {0.4}
    assert {s.tracking.min_hits for s in config.streams} == {5}
    assert (config.webview.bind, config.webview.port, config.webview.token) == ("0.0.0.0", 9000, "s3cret-token")
    assert config.streams[0].zones == DOOR_ZONES  # what no flag set stays the file's


def test_a_bad_flag_is_reported_like_a_key_with_the_flag_named():
    given = given_flags(PARSER, ["--model", "x.onnx", "--batch-size", "0"])
    with pytest.raises(ConfigError) as caught:
        effective_config(None, given, "box.yaml", DEFAULTS)
    assert caught.value.lines == ["flags: models.model.batch_size: give a number at least 1 (got 0) (set by "
                                  "--batch-size)"]


def test_flags_alone_make_a_configuration():
    given = given_flags(PARSER, ["--model", "m.xml", "--source", "a.mp4", "--source", "1", "--track"])
    config = effective_config(None, given, "box.yaml", DEFAULTS)
    assert [(s.name, s.source, s.model, s.tracks) for s in config.streams] == \
        [("cam0", "a.mp4", "model", True), ("cam1", "1", "model", True)]


def test_model_flags_with_several_models_are_refused():
    with pytest.raises(UserError, match="--model: the configuration has 2 models"):
        effective_config(good(), given_flags(PARSER, ["--model", "x.onnx"]), "box.yaml", DEFAULTS)


def test_secrets_are_redacted_wherever_the_configuration_is_shown():
    shown = json.dumps(redacted(to_data(check_config(good(), "box.yaml", DEFAULTS))))
    for secret in ("s3cret-token", "mqtt-pw", "hunter2", "abc123"):
        assert secret not in shown
    data = json.loads(shown)
    assert data["webview"]["token"] == REDACTED and data["sinks"]["mqtt"]["password"] == REDACTED
    assert data["streams"][0]["source"] == f"rtsp://admin:{REDACTED}@cam1/live"
    assert data["sinks"]["webhook"] == f"http://hooks:9000/events?key={REDACTED}"


def test_show_prints_the_configuration_redacted(tmp_path):
    path = tmp_path / "box.json"
    path.write_text(json.dumps(good()))
    run = subprocess.run([sys.executable, "-m", "boxconfig", "show", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "s3cret-token" not in run.stdout and "hunter2" not in run.stdout
    assert json.loads(run.stdout)["streams"][1]["tracking"]["max_missed"] == PARSER.get_default("track_max_missed")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_restart_from_a_written_back_file_has_the_same_streams_and_zones(tmp_path, suffix):
    path = tmp_path / f"box{suffix}"
    path.write_text(json.dumps(good()) if suffix == ".json" else "")
    if suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(good()))
    path.chmod(0o640)
    config = load_config(path, DEFAULTS)
    # As the API would: a stream added with zones of its own, one's threshold changed.
    added = replace(config.streams[0], name="gate", source="rtsp://cam3/live",
                    zones={"lines": [{"name": "in", "points": [[10, 10], [200, 10]]}]})
    edited = replace(config, streams=[replace(config.streams[0], score_threshold=0.5), config.streams[1], added])
    write_config(path, edited, DEFAULTS)
    again = load_config(path, DEFAULTS)
    assert again == edited
    assert [(s.name, s.zones) for s in again.streams] == [("door", DOOR_ZONES), ("yard", None),
                                                          ("gate", added.zones)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the secrets stay as private as they were
    assert "high_score" not in path.read_text()  # defaults are not written: a new default still applies
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    assert read_config_data(path)["streams"][2]["zones"] == added.zones


def test_the_reload_difference():
    old = check_config(good(), "box.yaml", DEFAULTS)
    data = good()
    data["streams"][0]["source"] = "rtsp://cam1/other"
    data["streams"].append({"name": "gate", "source": "2", "model": "shapes"})
    data["models"]["people"]["batch_size"] = 4
    data["webview"]["port"] = 8081
    changes = config_changes(old, check_config(data, "box.yaml", DEFAULTS))
    assert (changes.streams_added, changes.streams_removed) == (("gate",), ())
    assert changes.streams_changed == ("door", "yard")  # yard: its model is loaded again
    assert changes.models_changed == ("people",) and changes.restart_sections == ("webview",)
    assert changes.summary() == "streams +gate ~door ~yard; models ~people; restart needed: webview"
    assert config_changes(old, old).empty


def test_the_check_runs_on_the_device_python(tmp_path):
    """JetPack's Python 3.8 with Ubuntu's python3-jsonschema: Debian's system Python (jsonschema 4.10) stands in."""
    from tests.system_python import run_system_python

    data = good()
    data["streams"][1]["sorce"] = data["streams"][1].pop("source")
    path = tmp_path / "box.json"
    path.write_text(json.dumps(data))
    code = ("import sys; from runtimes.cli import run_cli; from boxconfig.__main__ import main; "
            f"sys.exit(run_cli(main, ['check', {str(path)!r}]))")
    run = run_system_python(code, "python3-jsonschema python3-yaml python3-opencv", cwd=ROOT)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"error: {path}: streams[1].sorce: unknown key; did you mean 'source'?",
                                       f"error: {path}: streams[1].source: missing; this key is required here"]


def test_each_models_streams_get_their_zones_checked_with_that_models_classes():
    from boxconfig.zone_sections import zones_of_model

    data = good()
    data["zones"] = {"streams": {"yard": {"lines": [{"name": "gate", "points": [[0, 0], [9, 0]],
                                                    "classes": ["car"]}]}}}
    config = check_config(data, "box.yaml", DEFAULTS)
    door = zones_of_model(config, "shapes", ["background", "person"], "box.yaml")
    assert list(door) == ["door"] and [z.name for z in door["door"].zones] == ["waiting"]
    assert door["door"].zones[0].classes == [1] and [ln.name for ln in door["door"].lines] == ["entry"]
    yard = zones_of_model(config, "people", ["background", "person", "car"], "box.yaml")
    assert [ln.classes for ln in yard["yard"].lines] == [[2]]
    with pytest.raises(ConfigError) as caught:
        zones_of_model(config, "people", ["background", "person"], "box.yaml")
    assert caught.value.lines == ["box.yaml: zones.streams.yard.lines[0].classes[0]: class 'car' is not among the "
                                  "model's classes ('person'); fix the name"]


def test_a_bad_file_under_flags_is_reported_as_the_file_says():
    with pytest.raises(ConfigError) as caught:
        effective_config({"streams": "cam"}, given_flags(PARSER, ["--score-threshold", "0.3"]), "box.yaml", DEFAULTS)
    assert caught.value.lines == ["box.yaml: models: missing; this key is required here",
                                  "box.yaml: streams: give a list (got 'cam')"]


def test_addresses_are_checked_by_the_code_that_checks_the_flags():
    data = good()
    data["sinks"]["webhook"] = "ftp://hooks/events"
    data["sinks"]["mqtt"]["broker"] = "broker:99999/cams"
    data["webview"]["rtsp_out"] = "8554/a b"
    lines = problems(data)
    assert "box.yaml: sinks.webhook: not an http:// or https:// URL; give one like http://127.0.0.1:8080/events" \
        in lines
    assert "box.yaml: sinks.mqtt.broker: port '99999' is not a number in 1..65535; give HOST:PORT/TOPIC" in lines
    assert "box.yaml: webview.rtsp_out: the path may hold letters, digits and . _ ~ - / only" in lines
