"""The class-names file must be text: random bytes, bytes that are not UTF-8 and control characters are one
line naming the flag (apps/evaluate.py --classes used to print garbled names and exit 0)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from runtimes.class_names import read_class_names
from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_a_text_file_gives_its_names_without_the_background_line(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffbackground\r\nperson\r\n\r\n  traffic light \r\ncafé\tchair\n".encode("utf-8"))
    assert read_class_names(path) == ["person", "traffic light", "café\tchair"]


@pytest.mark.parametrize("data, words", [
    (random.Random(7).randbytes(300), "is not UTF-8"),
    (b"person\ncar\xff\xfe\n", "line 2, column 4: byte 0xff is not UTF-8"),
    (b"person\ncar\x00\n", "line 2: the line holds control characters"),
    (b"person\x1bbike\n", "line 1: the line holds control characters"),
    ("person\u2028car\n".encode("utf-8"), "line 1: the line holds control characters"),
    (b"\n \n", "lists no classes"),
])
def test_a_classes_file_that_is_not_text_is_one_line(tmp_path, data, words):
    path = tmp_path / "classes.txt"
    path.write_bytes(data)
    with pytest.raises(UserError, match=words) as refused:
        read_class_names(path, "--classes")
    assert str(refused.value).startswith(f"--classes {path}") and "\n" not in str(refused.value)


def test_evaluate_refuses_random_bytes_as_classes_before_any_work(tmp_path, demo_model):
    _, onnx_path, _ = demo_model
    classes = tmp_path / "classes.txt"
    classes.write_bytes(random.Random(24).randbytes(2000))
    result = subprocess.run([sys.executable, "apps/evaluate.py", "--model", str(onnx_path), "--voc-root",
                             str(tmp_path / "no-such-voc"), "--classes", str(classes), "--json",
                             str(tmp_path / "ap.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: --classes {classes}") and "is not UTF-8" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.txt"]  # nothing written
