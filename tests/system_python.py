"""Debian's system Python, the stand-in for JetPack's (numpy 1.x, OpenCV 4.6 with GStreamer, python3-gi):
device code run under it from the tests."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"


def run_system_python(code: str, packages: str, timeout: float = 120,
                      **options: Any) -> "subprocess.CompletedProcess[str]":
    """``code`` run by :data:`SYSTEM_PYTHON`; the test is skipped, with the reason, when that interpreter
    does not exist or lacks a module (the skip names the Debian ``packages`` that bring them)."""
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=timeout,
                                **options)
    except FileNotFoundError:
        pytest.skip(f"{SYSTEM_PYTHON} does not exist")
    if "No module named" in result.stderr:
        pytest.skip(f"{SYSTEM_PYTHON} lacks a module: {result.stderr.strip().splitlines()[-1]} "
                    f"(apt install {packages})")
    return result
