"""recording/'s pure parts in the virtual environment (no GStreamer): the options' one-line errors, the ring
buffer's bounds, clip planning, names and temporaries, retention, snapshots. The codecs, the RTSP server, a
full disk and kill -9 are in tests/test_recording_device.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recording.options import TRIGGERING_EVENTS, parse_record_options
from recording.paths import new_clip_paths, remove_dead_temporaries
from recording.planner import ClipPlanner
from recording.retention import RetentionLimits, clips_on_disk, enforce
from recording.ring import UnitRing
from recording.snapshots import SnapshotPicker, SnapshotWatch, TrackBox, crop_box, write_snapshot
from recording.units import NS, EncodedUnit
from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "square"]


def options(folder, **change):
    args = dict(folder=folder, record_on=["all"], pre_s=5.0, post_s=5.0, retain_days=None, retain_gb=None,
                class_names=CLASSES)
    args.update(change)
    return parse_record_options(**args)


@pytest.mark.parametrize("change, words", [
    (dict(pre_s=-1.0), "--pre-seconds -1.0"), (dict(post_s=float("nan")), "--post-seconds nan"),
    (dict(retain_days=0.0), "--retain-days 0.0"), (dict(retain_gb=0.0), "--retain-gb 0.0"),
    (dict(retain_gb=-2.0), "--retain-gb -2.0"), (dict(record_on=["class:person"]), "no class 'person'"),
    (dict(record_on=["zone_enter,bogus"]), "--record-on 'bogus'"),
])
def test_bad_options_are_one_line_naming_the_flag(tmp_path, change, words):
    with pytest.raises(UserError) as caught:
        options(tmp_path / "clips", **change)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "clips").exists()  # refused before anything is made


def test_unwritable_or_non_folder_record_path_is_refused(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(UserError, match="exists and is not a folder"):
        options(afile)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permission bits do not stop root (the device test covers a read-only mount)")
        with pytest.raises(UserError, match="cannot write there"):
            options(locked)
    finally:
        locked.chmod(0o700)


def test_triggers_default_to_every_event_but_counts_and_take_classes(tmp_path):
    default = options(tmp_path).triggers
    assert default.event_types == frozenset(TRIGGERING_EVENTS) and "counts" not in default.event_types
    chosen = options(tmp_path, record_on=["line_crossed", "class:square"]).triggers
    assert chosen.event_types == {"line_crossed"} and chosen.classes == {"square"}


def test_bad_options_exit_2_with_one_line_through_run_cli(tmp_path):
    code = ("import sys; from runtimes.cli import run_cli; from recording.options import parse_record_options\n"
            "def main(argv): parse_record_options(sys.argv[1], ['all'], -3, 5, None, None, [])\n"
            "sys.exit(run_cli(main))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --pre-seconds -3: seconds must be a finite number >= 0; "
                                                  "give e.g. --pre-seconds 5"]


def unit(index, fps=10.0, gop=10, size=100):
    pts = int(index / fps * NS)
    return EncodedUnit(index, pts, pts, int(NS / fps), index % gop == 0, b"x" * size, "video/x-h264", 0.0)


def test_ring_keeps_its_span_in_whole_gops_from_a_keyframe():
    ring = UnitRing(max_s=2.5, max_bytes=10 ** 9)
    ring.append(unit(5))  # no keyframe yet: dropped
    for i in range(10, 100):
        ring.append(unit(i))
        oldest, newest = ring.oldest(), ring.newest()
        assert oldest is not None and newest is not None and oldest.keyframe
        assert (newest.pts_ns - oldest.pts_ns) / NS <= 2.5
    kept = [u.index for u in ring.after(-1)]
    assert kept[0] == 80 and kept[-1] == 99  # 70..99 spans 2.9 s: over; 80..99: 1.9 s
    start = ring.from_keyframe(9.05)
    assert start[0].index == 90 and start[-1].index == 99
    assert ring.from_keyframe(1.0)[0].index == 80  # older than kept: from the first kept (a short pre-roll)
    assert [u.index for u in ring.after(97)] == [98, 99]


def test_ring_bytes_bound_keeps_the_newest_gop_whole():
    ring = UnitRing(max_s=100.0, max_bytes=1500)
    for i in range(0, 40):
        ring.append(unit(i, size=100))
    assert ring.bytes <= 1500 and ring.after(-1)[0].index == 30 and len(ring) == 10
    big = UnitRing(max_s=100.0, max_bytes=50)
    for i in range(0, 5):
        big.append(unit(i))
    assert len(big) == 5  # one GOP over the bound: kept, a clip needs its keyframe


def test_overlapping_events_extend_one_clip_and_others_start_new_ones():
    planner = ClipPlanner(pre_s=5.0, post_s=5.0)
    first, new = planner.add(20.0, {"seq": 0})
    assert new and (first.start_s, first.end_s) == (15.0, 25.0)
    same, new = planner.add(29.0, {"seq": 1})  # its window [24, 34] overlaps [15, 25]
    assert same is first and not new and first.end_s == 34.0 and len(first.events) == 2
    assert planner.due(33.9) is None and planner.due(34.0) is first
    second, new = planner.add(50.0, {"seq": 2})
    assert new and second.number == 1 and second.start_s == 45.0
    assert planner.add(1.0)[0].start_s == 45.0  # a class trigger inside the window: no event, same clip
    assert planner.close() is second and planner.open is None


def test_clip_names_and_dead_temporaries(tmp_path):
    wall = time.mktime((2024, 3, 9, 13, 45, 1, 0, 0, -1))
    paths = new_clip_paths(tmp_path, "door/1", wall, 0)
    assert paths.video == tmp_path / "door%2F1" / "2024-03-09" / "134501-0.mp4"
    assert paths.sidecar.name == "134501-0.json" and paths.snapshot(7, crop=True).name == "134501-0-e7-crop.jpg"
    paths.video.write_bytes(b"done")
    assert new_clip_paths(tmp_path, "door/1", wall, 0).video.name == "134501-1.mp4"  # a restart: no overwrite
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = paths.video.parent
    stale = folder / f".134501-1.mp4.{dead.pid}.abcd.tmp.mp4"
    live = folder / f".134501-2.mp4.{os.getpid()}.abcd.tmp.mp4"
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    assert remove_dead_temporaries(tmp_path) == [stale]
    assert live.exists() and paths.video.exists()


def make_clip(folder: Path, stem: str, size: int, age_s: float, now: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in ((f"{stem}.mp4", size), (f"{stem}.json", 10), (f"{stem}-e3.jpg", 5), (f"{stem}-e3-crop.jpg", 5)):
        (folder / name).write_bytes(b"v" * part)
        os.utime(folder / name, (now - age_s, now - age_s))


def test_retention_removes_oldest_first_within_both_limits(tmp_path):
    now = time.time()
    for i, age in enumerate([9 * 86400, 3 * 86400, 2 * 86400, 3600, 60]):
        make_clip(tmp_path / "cam" / f"day{i}", f"120000-{i}", 1000, age, now)
    (tmp_path / "cam" / "day4" / ".120000-9.mp4.1.x.tmp.mp4").write_bytes(b"t" * 5000)  # not a clip
    removed = enforce(tmp_path, RetentionLimits.of(days=7, gb=None), now)
    assert [c.files[0].name.split(".")[0].split("-e")[0] for c in removed] == ["120000-0"]
    assert not (tmp_path / "cam" / "day0").exists()  # the emptied day folder goes too
    limit = 2 * 1020 + 10
    removed = enforce(tmp_path, RetentionLimits(max_bytes=limit), now)
    assert len(removed) == 2 and all(len(c.files) == 4 for c in removed)
    left = clips_on_disk(tmp_path)
    assert sum(c.bytes for c in left) <= limit and len(left) == 2
    assert [p.name for c in left for p in c.files if p.suffix == ".mp4"] == ["120000-3.mp4", "120000-4.mp4"]


def test_snapshot_keeps_the_best_scoring_frame_in_the_window(tmp_path):
    cv2 = pytest.importorskip("cv2")
    picker = SnapshotPicker()
    picker.watch(SnapshotWatch(4, 7, 1.0, 3.0, tmp_path / "full.jpg", tmp_path / "crop.jpg"))
    for step, score in enumerate([0.5, 0.9, 0.6, 0.95]):  # the 0.95 is after the window
        frame = np.full((120, 160, 3), 40 * step, np.uint8)
        picker.offer(0.5 + step, frame, [TrackBox(7, "circle", (40.0, 30.0, 80.0, 70.0), score),
                                        TrackBox(8, "square", (0, 0, 10, 10), 1.0)])
        frame[:] = 255  # the caller draws on its frame afterwards: the kept one must be a copy
    assert picker.due(3.0) == []
    (watch,) = picker.due(3.6)
    assert watch.score == 0.9 and watch.time_s == 1.5
    assert write_snapshot(watch)
    full, crop = cv2.imread(str(tmp_path / "full.jpg")), cv2.imread(str(tmp_path / "crop.jpg"))
    assert full.shape == (120, 160, 3) and crop.shape == (60, 60, 3)  # 40x40 box, 25 % margin each side
    assert abs(int(crop[30, 30, 0]) - 40) < 8  # the frame at 1.5 s (value 40), not a later one
    assert full[30, 40, 1] > 200 and full[30, 40, 0] < 80  # the green box drawn at the box's corner


def test_crop_stays_inside_the_frame():
    assert crop_box((-5.0, -5.0, 20.0, 20.0), 100, 50) == (0, 0, 26, 26)
    assert crop_box((90.0, 40.0, 120.0, 60.0), 100, 50) == (82, 35, 100, 50)
