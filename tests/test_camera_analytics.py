"""apps/camera.py with tracking, zones and events, end to end: two streams of the generated tracking set,
track ids in the JSON lines, zone and line events in the events file, counts in the summary, and the
JSON lines' tracks equal to the tracker run on the detector's own results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

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
