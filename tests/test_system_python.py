"""Device code under another interpreter: Debian's system Python with its own OpenCV (4.6, built with
GStreamer, like JetPack's) and numpy 1.x. Skipped, with the reason, where that interpreter or its
python3-opencv is missing (.ci/run installs it when it runs as root with apt)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from calibration.images import read_image
from runtimes.loader import load_detector
from tests.system_python import SYSTEM_PYTHON, run_system_python

ROOT = Path(__file__).resolve().parents[1]


def _system_python() -> str:
    probe = "import cv2, numpy, json; print(json.dumps([cv2.__version__, numpy.__version__]))"
    result = run_system_python(probe, "python3-opencv", timeout=60)
    if result.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} has no OpenCV (apt install python3-opencv)")
    return result.stdout


def _run(code: str) -> dict:
    result = subprocess.run([SYSTEM_PYTHON, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_gstreamer_pipeline_stream_delivers_the_newest_frames():
    versions = _system_python()
    info = _run("""
import json, time
from streams.capture import CaptureOptions, StreamCapture, StreamSource
from streams.sources import has_gstreamer, parse_source
if not has_gstreamer():
    print(json.dumps({"gstreamer": False})); raise SystemExit
spec = parse_source("videotestsrc num-buffers=300 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1")
capture = StreamCapture(StreamSource("ball", spec), CaptureOptions(), log=lambda line: None)
capture.start()
frames, deadline = [], time.monotonic() + 60
while len(frames) < 20 and time.monotonic() < deadline:
    frame = capture.take()
    if frame is None:
        time.sleep(0.005)
    else:
        frames.append(frame)
closed = capture.close()
print(json.dumps({"gstreamer": True, "opened": capture.description, "count": len(frames), "closed": closed,
                  "shape": list(frames[-1].image.shape), "dtype": str(frames[-1].image.dtype),
                  "indices": [f.index for f in frames], "distinct": len({f.image.tobytes() for f in frames})}))
""")
    if not info["gstreamer"]:
        pytest.skip(f"Debian's OpenCV here ({versions.strip()}) was built without GStreamer")
    assert info["opened"].startswith("GStreamer videotestsrc") and "appsink drop=true max-buffers=1" in info["opened"]
    assert info["count"] == 20 and info["shape"] == [240, 320, 3] and info["dtype"] == "uint8" and info["closed"]
    assert info["indices"] == sorted(set(info["indices"]))  # never an old frame twice
    assert info["distinct"] > 10  # the ball moves: real frames, not one repeated


def test_shared_post_processor_gives_the_same_detections_on_numpy_1(demo_model, voc_mini, tmp_path):
    versions = json.loads(_system_python())
    if not versions[1].startswith("1."):
        pytest.skip(f"the system numpy is {versions[1]}, not 1.x")
    detector = load_detector(demo_model[1])
    image = read_image(sorted((voc_mini / "VOCdevkit" / "VOC2007" / "JPEGImages").glob("*.jpg"))[0])[0]
    expected = detector(image)
    outputs = detector.infer(detector.prepare(image))
    np.savez(tmp_path / "raw.npz", **outputs)
    (tmp_path / "meta.json").write_text(detector.meta.to_json())
    got = _run(f"""
import json, numpy as np
from runtimes.metadata import ModelMetadata
from runtimes.postprocess import SSDPostprocessor
meta = ModelMetadata.from_json(open({str(tmp_path / "meta.json")!r}).read())
raw = dict(np.load({str(tmp_path / "raw.npz")!r}))
dets = SSDPostprocessor(meta)(raw, {image.shape[:2]!r})
print(json.dumps({{"numpy": np.__version__, "boxes": dets.boxes.tolist(), "scores": dets.scores.tolist(),
                  "labels": dets.labels.tolist()}}))
""")
    assert got["numpy"].startswith("1.") and len(expected) > 0
    assert got["labels"] == expected.labels.tolist()
    np.testing.assert_allclose(got["scores"], expected.scores, rtol=1e-6)
    np.testing.assert_allclose(got["boxes"], expected.boxes, atol=1e-3)
