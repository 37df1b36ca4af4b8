"""Outputs never clobber what is not a regular file: a folder, a FIFO, a device or a socket at an output path is
refused in one line before any work (runtimes/atomic.py check_output_path), a symbolic link is followed (its
target replaced, the link kept); the apps refuse such paths, and a webhook URL that cannot work, at start."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runtimes.atomic import JsonLines, atomic_write_text, check_output_path, move_into_place, temporary_beside
from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _null_device(path: Path) -> Path:
    """A character device of our own (/dev/null's numbers): replacing it would harm nothing else."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def _socket_file(path: Path) -> Path:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the socket file stays
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


SPECIAL = {"folder": (_folder, "a folder"), "fifo": (_fifo, "a FIFO"), "device": (_null_device, "a character device"),
           "socket": (_socket_file, "a socket")}


def _kind(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


@pytest.mark.parametrize("special", sorted(SPECIAL))
def test_an_output_over_a_special_file_is_refused_and_the_file_kept(tmp_path, special):
    make, words = SPECIAL[special]
    path = make(tmp_path / "out.json")
    kind = _kind(path)
    with pytest.raises(UserError, match=f"--json {path}: {words}") as refused:
        check_output_path(path, "--json")
    assert "\n" not in str(refused.value)
    with pytest.raises(UserError, match=words):  # the writers check too
        atomic_write_text(path, "{}")
    with pytest.raises(UserError, match=words):
        JsonLines(path)
    assert _kind(path) == kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary left


def test_a_symbolic_link_is_followed_its_target_replaced_and_the_link_kept(tmp_path):
    (tmp_path / "results").mkdir()
    target = tmp_path / "results" / "run.json"
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(Path("results") / "run.json")
    assert check_output_path(link) == target.resolve()
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    lines = JsonLines(link)
    lines.write({"a": 1})
    lines.close()
    assert link.is_symlink() and target.read_text() == '{"a": 1}\n'
    empty = JsonLines(link)  # a run without lines: an empty file, at the target too
    empty.close()
    assert link.is_symlink() and target.read_text() == ""
    dangling = tmp_path / "next.json"
    dangling.symlink_to(Path("results") / "next.json")
    atomic_write_text(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "results" / "next.json").read_text() == "made"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["next.json", "run.json"]


def test_a_link_to_a_special_file_or_a_loop_is_refused(tmp_path):
    fifo = _fifo(tmp_path / "pipe")
    (tmp_path / "to-pipe").symlink_to(fifo)
    with pytest.raises(UserError, match=r"\(a link to .*pipe\): a FIFO"):
        check_output_path(tmp_path / "to-pipe", "--events")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(UserError, match="cannot be an output"):
        check_output_path(tmp_path / "a", "--json")
    assert _kind(fifo) == stat.S_IFIFO


def test_a_path_that_became_special_during_the_run_is_not_replaced(tmp_path):
    path = tmp_path / "out.jsonl"
    temp = temporary_beside(path)
    temp.write_text("{}\n")
    _fifo(path)  # made while the run wrote its temporary
    with pytest.raises(UserError, match="a FIFO"):
        move_into_place([temp], [path])
    assert _kind(path) == stat.S_IFIFO and temp.read_text() == "{}\n"


def _run(script: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OPENCV_LOG_LEVEL="ERROR"))


def _one_line(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and words in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("flag, special", [("--json", "fifo"), ("--json", "folder"), ("--events", "device"),
                                           ("--output", "fifo")])
def test_camera_refuses_a_special_output_at_start(tmp_path, demo_model, flag, special):
    _, onnx_path, _ = demo_model
    make, words = SPECIAL[special]
    path = make(tmp_path / ("out.mp4" if flag == "--output" else "out.jsonl"))
    kind = _kind(path)
    zones = tmp_path / "zones.json"
    zones.write_text('{"lines": [{"name": "entry", "points": [[0, 0.5], [1, 0.5]]}], "coordinates": "normalized"}')
    extra = ["--zones", zones] if flag == "--events" else []
    result = _run("apps/camera.py", "--model", onnx_path, "--source", tmp_path / "none.avi", "--headless",
                  flag, path, *extra)
    _one_line(result, f"{flag} {path}: {words}")
    assert "model:" not in result.stdout  # refused before the model was loaded
    assert _kind(path) == kind and sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "zones.json"])


@pytest.mark.parametrize("url, words", [("http://[::1/x", "not a valid URL"),
                                        ("http://127.0.0.1:99999/x", "the port is not a number in 1..65535")])
def test_camera_refuses_a_webhook_url_that_cannot_work_at_start(tmp_path, demo_model, url, words):
    _, onnx_path, _ = demo_model
    zones = tmp_path / "zones.json"
    zones.write_text('{"lines": [{"name": "entry", "points": [[0, 0.5], [1, 0.5]]}], "coordinates": "normalized"}')
    result = _run("apps/camera.py", "--model", onnx_path, "--source", tmp_path / "none.avi", "--headless",
                  "--zones", zones, "--webhook", url, "--events", tmp_path / "events.jsonl")
    _one_line(result, f"--webhook {url}: {words}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zones.json"]  # nothing written


def test_evaluate_refuses_a_folder_as_json_before_any_work(tmp_path, demo_model):
    _, onnx_path, _ = demo_model
    folder = _folder(tmp_path / "report")
    result = _run("apps/evaluate.py", "--model", onnx_path, "--voc-root", tmp_path / "no-such-voc", "--json", folder)
    _one_line(result, f"--json {folder}: a folder")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("name, make, words", [
    ("benchmark.json", _fifo, "--output-dir {path}: a FIFO"),
    ("benchmark.md", _folder, "--output-dir {path}: a folder"),
    ("benchmark.csv", lambda p: p.symlink_to("/etc/hostname") or p, "is a link to /etc/hostname, not to "
                                                                    ".benchmark.current/benchmark.csv"),
])
def test_benchmark_refuses_a_report_folder_it_cannot_publish_in_before_measuring(tmp_path, name, make, words):
    out = tmp_path / "report"
    out.mkdir()
    path = make(out / name)
    kind = _kind(path)
    result = _run("apps/benchmark.py", "--models", tmp_path / "missing.onnx", "--output-dir", out,
                  "--build-dir", tmp_path / "builds")
    _one_line(result, words.format(path=path))
    assert _kind(path) == kind and [p.name for p in out.iterdir()] == [name]
