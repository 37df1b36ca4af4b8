"""A clone without ../shared/data/voc-mini: the tests that need it fail at once, each in one line naming the
folder; the others still run. The suite is run in a subprocess with the sample's path pointed at a folder that
does not exist (a plugin module patches ``tests.reference_models.VOC_MINI`` before collection)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NEEDS_IT = [  # by the fixture, by the `exported` fixture (decisive_model), by voc_mini_images() in the body
    "tests/test_voc_reader.py::test_reads_voc_mini_test_split",
    "tests/test_voc_reader.py::test_image_checks",  # through the module's odd_images fixture
    "tests/test_voc_map.py::test_on_real_voc_annotations_perfect_shifted_and_missing",
    "tests/test_parity.py::test_postprocessor_equals_torchvision",
    "tests/test_openvino.py::test_fp32_ir_gives_the_same_detections_as_onnxruntime",
    "tests/test_export_cli.py::test_foreign_onnx_with_weights_as_inputs_and_old_opset",
]
DOES_NOT = ["tests/test_voc_map.py::test_hand_computed_ap_both_metrics",
            "tests/test_voc_map.py::test_iou_must_exceed_one_half"]


def test_tests_needing_the_voc_sample_fail_at_once_in_one_line(tmp_path):
    missing = tmp_path / "no-voc-mini"
    (tmp_path / "hide_voc_mini.py").write_text(
        "from pathlib import Path\nimport tests.reference_models as r\n"
        f"r.VOC_MINI = Path({str(missing)!r})\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
                             "-p", "hide_voc_mini", *NEEDS_IT, *DOES_NOT],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert re.search(rf"{len(DOES_NOT)} passed", out), out[-3000:]
    errors = len(NEEDS_IT) + 2  # test_postprocessor_equals_torchvision runs for three architectures
    assert re.search(rf"\b{errors} errors\b", out), out[-3000:]
    # Each failure's whole report is the one line naming the folder (no traceback, no torch error).
    reports = out.split(" ERROR at setup of ")[1:]
    assert len(reports) == errors
    for report in reports:
        body = report.split("\n")[1]
        assert body.startswith("this test needs the shared VOC sample and ") and \
            f"{missing / 'VOCdevkit'} does not exist" in body, report
    assert "TensorList" not in out and "Traceback" not in out
    assert elapsed < 60, f"took {elapsed:.0f} s: the fixtures ran before the check"
