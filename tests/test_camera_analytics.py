"""apps/camera.py with tracking, zones and events, end to end: two streams of the generated tracking set,
track ids in the JSON lines, zone and line events in the events file, counts in the summary, and the
JSON lines' tracks equal to the tracker run on the detector's own results. Bad zones and sources files
(issue #24): one line, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.bad_input_files import BAD_SOURCES_FILES, BAD_ZONES_FILES, Row, write_row
from tests.test_camera import write_video

ROOT = Path(__file__).resolve().parents[1]


def sequence_video(folder: Path, out: Path) -> Path:
    frames = sorted((folder / "img1").glob("*.jpg"))
    size = cv2.imread(str(frames[0])).shape[1::-1]
    return write_video(out, frames, size=size, fps=25.0)


def test_two_streams_with_zones_give_tracks_events_and_counts(tmp_path, demo_model):
    from calibration.synthetic_tracks import ensure_tracking_set

    _, onnx_path, _ = demo_model
    sequences = sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())[:2]
    videos = [sequence_video(seq, tmp_path / f"{seq.name}.avi") for seq in sequences]
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({
        "coordinates": "normalized",
        "zones": [{"name": "left-half", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
        "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]}))
    listing = tmp_path / "sources.txt"
    listing.write_text("".join(f"s{i}={video}\n" for i, video in enumerate(videos)))
    events = tmp_path / "events.jsonl"
    result = subprocess.run([sys.executable, "apps/camera.py", "--model", str(onnx_path), "--sources", str(listing),
                             "--headless", "--zones", str(zones), "--events", str(events), "--json",
                             str(tmp_path / "frames.jsonl")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1][len("summary: "):])
    assert summary["score_threshold"] == 0.1  # --zones tracks: ByteTrack's low-score detections are kept
    lines = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert {r["stream"] for r in lines} == {"s0", "s1"} and all("tracks" in r for r in lines)
    assert min(d["score"] for r in lines for d in r["detections"]) < 0.25
    ids = {(r["stream"], t["id"]) for r in lines for t in r["tracks"]}
    assert len(ids) >= 4  # several objects tracked per stream
    sent = [json.loads(line) for line in events.read_text().splitlines()]
    from_frames = [e for r in lines for e in r["events"]]
    assert sorted(e["seq"] for e in sent if e["stream"] == "s0") == \
        sorted(e["seq"] for e in from_frames if e["stream"] == "s0")  # every event reached the file
    crossed = [e for e in sent if e["type"] == "line_crossed"]
    assert crossed and all(e["track_id"] is not None and e["stream"] in ("s0", "s1") for e in crossed)
    streams = summary["analytics"]["streams"]
    for name in ("s0", "s1"):
        line = streams[name]["lines"]["middle"]
        counted = [e for e in crossed if e["stream"] == name]
        assert line["in"] + line["out"] == len(counted)
    assert summary["analytics"]["sinks"][f"file {events}"] == {"sent": len(sent), "failed": 0, "queued": 0}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    cv2.imwrite(str(folder / "000.jpg"), np.zeros((48, 64, 3), np.uint8))
    return folder


def refused_by_the_app(folder: Path, *args: str, model: str = "") -> str:
    """apps/camera.py run in ``folder`` (where the default events file would go) with outputs there too: the
    one line it refuses with, after checking it exits 2, with no traceback, and wrote nothing."""
    from export.demo_model import demo_onnx

    before = sorted(folder.iterdir())
    model = model or str(demo_onnx(verbose=False))
    result = subprocess.run([sys.executable, str(ROOT / "apps/camera.py"), "--model", model, "--headless", "--json",
                             "frames.jsonl", "--events", "events.jsonl", *args],
                            cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert sorted(folder.iterdir()) == before
    return result.stderr.strip()


@pytest.mark.parametrize("row", BAD_ZONES_FILES, ids=[row[0] for row in BAD_ZONES_FILES])
def test_a_bad_zones_file_stops_the_app_in_one_line_before_writing(tmp_path, image_folder, row: Row):
    pytest.importorskip("yaml")
    path = write_row(tmp_path, row)
    line = refused_by_the_app(tmp_path, "--source", str(image_folder), "--zones", path.name)
    assert line.startswith(f"error: --zones {path.name}") and row[3] in line, line


@pytest.mark.parametrize("row", BAD_ZONES_FILES, ids=[row[0] for row in BAD_ZONES_FILES])
def test_a_zones_file_whose_text_is_bad_is_refused_before_the_model_is_looked_for(tmp_path, image_folder, row: Row):
    """With a model file that does not exist, the app names the zones file when its text is refused, and the
    model when only the content is wrong (checking that needs the model's classes)."""
    pytest.importorskip("yaml")
    from analytics.zone_file import read_zone_data
    from runtimes.errors import UserError

    path = write_row(tmp_path, row)
    try:
        read_zone_data(path)
        text_refused = False
    except UserError:
        text_refused = True
    line = refused_by_the_app(tmp_path, "--source", str(image_folder), "--zones", path.name, model="missing.onnx")
    assert line.startswith(f"error: --zones {path.name}" if text_refused else "error: missing.onnx"), line


@pytest.mark.parametrize("row", BAD_SOURCES_FILES, ids=[row[0] for row in BAD_SOURCES_FILES])
def test_a_bad_sources_file_stops_the_app_in_one_line_before_writing(tmp_path, row: Row):
    path = write_row(tmp_path, row)
    line = refused_by_the_app(tmp_path, "--sources", path.name)
    assert line.startswith(f"error: --sources {path.name}") and row[3] in line, line
