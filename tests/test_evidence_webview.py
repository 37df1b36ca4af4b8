"""Recorded events in the web view (issue #26, webview/evidence.py): the real server on a free 127.0.0.1 port,
the recorder's real clips and snapshots (recorded under the system Python from an H.264 file, as
tests/test_recording_device.py does), listed by /api/events and served by id only; the page in Chromium
shows each event's thumbnail and a link to its clip."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import pytest

pytest.importorskip("prometheus_client")
from recording.options import parse_record_options
from recording.recorder import Recording
from tests.test_recording_device import FPS, RECORD, system_json
from tests.test_webview import TOKEN, get, start_view

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Dict[str, Any]:
    """Three events of a 4 s H.264 file (the first two share a clip), their clips and snapshots on disk."""
    folder = tmp_path_factory.mktemp("evidence")
    config = {"video": str(folder / "source.mp4"), "codec": "h264", "frames": 4 * FPS, "rtsp": False,
              "folder": str(folder / "clips"), "pre": 0.5, "post": 0.5, "events": [1.0, 1.2, 2.8],
              "best_frame": 40}
    run = system_json(RECORD, config)
    assert run["error"] is None and len(run["events"]) == 3 and run["metrics"]["clips_written"] == 2
    return {"folder": Path(config["folder"]), "events": run["events"]}


@pytest.fixture()
def view(recorded):
    """A live view with a recorder whose index holds the recorded events (ids are the index's own)."""
    options = parse_record_options(recorded["folder"], ["all"], 0.5, 0.5, None, None, ["ball"])
    recording = Recording(options, ["cam"], log=lambda _line: None)
    for event in recorded["events"]:
        snapshot = recorded["folder"] / event["snapshot"]
        recording.index.add("cam", event, {"clip": recorded["folder"] / event["clip"], "snapshot": snapshot,
                                           "thumb": snapshot.with_name(snapshot.stem + "-crop.jpg")})
    v = start_view(["--serve", "127.0.0.1:0", "--serve-token", TOKEN], names=["cam"])
    v.add_component("recording", recording)
    yield v
    v.close()
    recording.close()


def listed(view, limit: int = 10, headers=AUTH) -> list:
    code, answer_headers, body = get(view, f"/api/events?limit={limit}", headers)
    assert code == 200 and answer_headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["recording"] is True
    return answer["events"]


def test_listed_events_have_their_clip_and_snapshots_served_by_id_with_ranges(view, recorded):
    items = listed(view)
    assert [item["event"]["seq"] for item in items] == [2, 1, 0]  # newest first
    for item in items:
        assert item["clip"] and item["snapshot"] and item["thumb"] and item["stream"] == "cam"
        assert recorded["folder"].name not in item["id"] and "/" not in item["id"]  # an id, not a path
        event = item["event"]
        clip = (recorded["folder"] / event["clip"]).read_bytes()
        snapshot = recorded["folder"] / event["snapshot"]
        for suffix, ctype, expected in ((".mp4", "video/mp4", clip), (".jpg", "image/jpeg", snapshot.read_bytes()),
                                        ("-thumb.jpg", "image/jpeg",
                                         snapshot.with_name(snapshot.stem + "-crop.jpg").read_bytes())):
            code, headers, body = get(view, f"/evidence/{item['id']}{suffix}", AUTH)
            assert (code, headers["content-type"], body) == (200, ctype, expected), suffix
            assert headers["accept-ranges"] == "bytes"
        # a video player's byte ranges
        size = len(clip)
        for wanted, first, last in (("bytes=100-199", 100, 199), (f"bytes={size - 10}-", size - 10, size - 1),
                                    ("bytes=-50", size - 50, size - 1), (f"bytes=0-{size * 2}", 0, size - 1)):
            code, headers, body = get(view, f"/evidence/{item['id']}.mp4", {**AUTH, "Range": wanted})
            assert code == 206 and body == clip[first:last + 1], wanted
            assert headers["content-range"] == f"bytes {first}-{last}/{size}"
        code, headers, _ = get(view, f"/evidence/{item['id']}.mp4", {**AUTH, "Range": f"bytes={size}-"})
        assert code == 416 and headers["content-range"] == f"bytes */{size}"
        code, headers, body = get(view, f"/evidence/{item['id']}.mp4", AUTH, method="HEAD")
        assert code == 200 and headers["content-length"] == str(size) and body == b""
    assert len(listed(view, 1)) == 1


def test_unknown_ids_paths_and_encoded_escapes_are_404_and_the_token_applies(view, recorded):
    item = listed(view)[0]
    clip = item["event"]["clip"]  # cam/YYYY-MM-DD/HHMMSS-N.mp4: a real file's path, relative to the folder
    for path in ["/evidence/nope.mp4", f"/evidence/{item['id']}x.mp4", f"/evidence/{item['id']}.json",
                 f"/evidence/{item['id']}.png", f"/evidence/{item['id']}", "/evidence/", "/evidence/.mp4",
                 f"/evidence/{clip}", "/evidence/" + clip.replace("/", "%2F"), "/evidence/" + clip.split("/")[-1],
                 "/evidence/..%2F..%2Fsource.mp4", "/evidence/%2e%2e%2fsource.mp4", "/evidence/../source.mp4",
                 f"/evidence/..%2F{item['id']}.mp4", f"/evidence/{item['id']}%00.mp4",
                 f"/evidence/{item['id']}/../{item['id']}.mp4", "/evidence/%2Fetc%2Fpasswd.jpg"]:
        code, _, body = get(view, path, AUTH)
        assert code == 404, path
        assert not body.startswith((b"\x00\x00\x00", b"\xff\xd8", b"root:"))
    for path in ["/api/events", f"/evidence/{item['id']}.mp4", f"/evidence/{item['id']}.jpg"]:
        assert get(view, path)[0] == 401
        assert get(view, path, {"Authorization": "Bearer wrong"})[0] == 401
    assert get(view, f"/evidence/{item['id']}.mp4?token={TOKEN}")[0] == 200
    for limit in ("0", "abc", "201", "-1"):
        code, _, body = get(view, f"/api/events?limit={limit}", AUTH)
        assert code == 400 and b"limit" in body


def test_a_removed_file_is_404_and_no_recorder_means_an_empty_list(tmp_path):
    options = parse_record_options(tmp_path / "clips", ["all"], 0.5, 0.5, None, None, ["ball"])
    recording = Recording(options, ["cam"], log=lambda _line: None)
    gone = recording.index.add("cam", {"type": "zone_enter"}, {"clip": tmp_path / "clips" / "gone.mp4"})
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"\xff\xd8 not under the record folder")
    escaped = recording.index.add("cam", {"type": "zone_enter"}, {"snapshot": outside})
    link = tmp_path / "clips" / "link.jpg"
    link.symlink_to(outside)
    linked = recording.index.add("cam", {"type": "zone_enter"}, {"snapshot": link})
    assert [item.get("clip", item.get("snapshot")) for item in recording.recent_events(5)] == [False] * 3
    view = start_view(["--serve", "127.0.0.1:0"], names=["cam"])
    try:
        code, _, body = get(view, "/api/events")
        assert code == 200 and body == b'{"recording": false, "events": []}'
        assert get(view, f"/evidence/{gone}.mp4")[0] == 404
        view.add_component("recording", recording)
        assert len(listed(view, headers={})) == 3
        for path in (f"/evidence/{gone}.mp4", f"/evidence/{escaped}.jpg", f"/evidence/{linked}.jpg"):
            assert get(view, path)[0] == 404, path
    finally:
        view.close()
        recording.close()


RECORDED_JS = """[...document.querySelectorAll('#recorded-list li')].map(li => {
  const img = li.querySelector('img.thumb'); const clip = li.querySelector('a.clip');
  return {id: li.dataset.id, text: li.innerText, thumb: img ? img.complete && img.naturalWidth : 0,
          clip: clip ? clip.href : null, visible: !document.getElementById('recorded').classList.contains('hidden')};
})"""


def test_chromium_lists_recorded_events_with_thumbnails_and_clip_links(view, recorded):
    from tests.test_webview_browser import CHROMIUM, DevTools

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    browser = DevTools(profile)
    try:
        browser.open(f"{view.url}?token={TOKEN}")
        deadline, rows = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            rows = browser.evaluate(RECORDED_JS) or []
            if len(rows) == 3 and all(row["thumb"] for row in rows):
                break
            time.sleep(0.2)
        # the link the page gives, fetched as the browser would follow it
        clip_status = browser.call("Runtime.evaluate", expression=f"fetch({rows[0]['clip']!r}).then(r => r.status)",
                                   awaitPromise=True, returnByValue=True)["result"]["value"] if rows else None
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
    ids = [item["id"] for item in listed(view)]
    assert [row["id"] for row in rows] == ids and all(row["visible"] and row["thumb"] for row in rows), rows
    for row in rows:
        assert row["clip"].endswith(f"/evidence/{row['id']}.mp4?token={TOKEN}")
        assert "cam" in row["text"] and "line_crossed" in row["text"] and "track #1" in row["text"]
    assert clip_status == 200
