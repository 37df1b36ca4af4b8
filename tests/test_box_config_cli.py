"""apps/camera.py --config with a bad configuration: every problem at once, one line each naming the file and
the key path, exit 2, before anything starts (no configuration printed, no model opened). The library-level
checks are tests/test_config.py's; this is the camera's front."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def camera(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "apps/camera.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def refused(proc: subprocess.CompletedProcess) -> list:
    """The error lines of a run that must have stopped before anything started."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert "configuration:" not in proc.stdout and "model:" not in proc.stdout, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), lines
    return lines


def test_every_problem_of_a_file_one_line_each_with_its_key_path(tmp_path):
    model = tmp_path / "never-opened.xml"  # a model the run must not reach: it does not exist
    config = tmp_path / "box.json"
    config.write_text(json.dumps({
        "models": {"shapes": {"path": str(model)}},
        "streams": [
            {"name": "door", "sorce": "rtsp://127.0.0.1:9/x", "model": "shapes"},   # unknown key, source missing
            {"name": "door", "source": "0", "model": "shape", "max_frames": "ten"},  # duplicate, model, type
        ],
        "zones": {"streams": {"gate": {"lines": [{"name": "l", "points": [[0, 0], [1, 1]]}]}}},  # unknown stream
    }))
    lines = refused(camera("--config", config, "--headless"))
    at = f"error: {config}: "
    expected = [
        (at + "streams[0].sorce: ", "did you mean 'source'?"),
        (at + "streams[0].source: ", "missing"),
        (at + "streams[1].max_frames: ", "whole number (got 'ten')"),
        (at + "streams[1].name: ", "'door' is the name of streams[0] too"),
        (at + "streams[1].model: ", "did you mean 'shapes'?"),
        (at + "zones.streams.gate: ", "'gate' is not one of this run's streams"),
    ]
    for start, words in expected:
        assert any(line.startswith(start) and words in line for line in lines), (start, words, lines)
    assert len(lines) == len(expected), lines


def test_a_bad_flag_over_a_good_file_names_the_flag(tmp_path):
    config = tmp_path / "box.yaml"
    config.write_text(f"models:\n  m: {{path: {tmp_path / 'm.xml'}}}\nstreams:\n  - {{name: a, source: '0'}}\n")
    lines = refused(camera("--config", config, "--batch-size", "0", "--track-min-hits", "0"))
    assert sorted(lines) == [
        f"error: {config}: models.m.batch_size: give a number at least 1 (got 0) (set by --batch-size)",
        f"error: {config}: streams[0].tracking.min_hits: give a number at least 1 (got 0) (set by --track-min-hits)"]


def test_usage_errors_of_the_config_flags(tmp_path):
    assert refused(camera("--config", tmp_path / "absent.yaml")) == [
        f"error: {tmp_path / 'absent.yaml'}: no such file; give the path of a configuration file (YAML or JSON, "
        "see docs/configuration.md)"]
    assert refused(camera("--model", tmp_path / "m.xml", "--config-writeback")) == [
        "error: --config-writeback needs --config FILE (the file it writes)"]
    assert refused(camera("--source", "0")) == ["error: give --model FILE (or --config FILE); see --help"]
    config = tmp_path / "box.yaml"
    config.write_text(f"models:\n  m: {{path: {tmp_path / 'm.xml'}}}\nstreams:\n  - {{name: a, source: '0'}}\n")
    assert refused(camera("--config", config, "--interval", "door=2")) == [
        "error: --interval door=...: no stream is called 'door'; the streams are a"]
