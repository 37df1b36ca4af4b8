"""The KServe client against servers that misbehave (issue #24): each answer here is one a real server would
never send, so it comes from the fake servers of tests/kserve_fake.py on 127.0.0.1. Trickled answers are
bounded by the timeout, oversized ones refused before they are read, malformed ones named and not retried,
bad URLs one line (through the apps, as subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from runtimes.errors import UserError
from runtimes.loader import load_detector
from tests.conftest import ROOT
from tests.kserve_fake import (
    OUTPUTS,
    FakeGrpc,
    FakeKServe,
    Reply,
    Request,
    binary_answer,
    demo_config,
    grpc_outputs,
    infer_answer,
    trickle,
)

FRAME = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
HUGE = 500 << 20  # what the probe sent: 500 MiB
TAKEN_BOUND = 64 << 20  # socket buffers hold a few MiB; a client that reads the answer takes all of it


@pytest.fixture(scope="module")
def metadata_json(demo_model) -> str:
    from export.demo_model import demo_onnx
    from export.onnx_model import require_metadata

    return require_metadata(demo_onnx(verbose=False, dynamic_batch=True)).to_json()


def test_the_fake_server_serves_a_detector(metadata_json):
    """The baseline the faults below depart from: the default answers make a working detector."""
    with FakeKServe(metadata_json) as fake:
        with load_detector(fake.url(), timeout=5) as detector:
            assert detector.max_batch == 8
            results = detector.detect_batch([FRAME, FRAME, FRAME])
        assert len(results) == 3 and fake.count("infer") == 1
        assert json.loads(fake.requests[-1].body[:int(fake.requests[-1].headers[
            "inference-header-content-length"])])["inputs"][0]["shape"] == [3, 3, 320, 320]


@pytest.mark.parametrize("route", ["config", "infer"])
def test_a_server_trickling_its_headers_fails_within_the_timeout(metadata_json, route):
    """One header line a second, then a good answer: a client bounded per read waits for all of it."""
    timeout = 1.5
    with FakeKServe(metadata_json) as fake:
        good = json.dumps(demo_config(metadata_json)).encode()
        if route == "config":
            fake.handlers["config"] = trickle(good, lines=8)
            started = time.monotonic()
            with pytest.raises(UserError, match=r"no complete answer within 1\.5 s"):
                load_detector(fake.url(), timeout=timeout)
        else:
            fake.handlers["infer"] = lambda request, reply: trickle(*_answer(request))(request, reply)
            detector = load_detector(fake.url(), timeout=timeout)
            started = time.monotonic()
            with pytest.raises(UserError, match=r"no complete answer within 1\.5 s"):
                detector(FRAME)
            detector.close()
        assert time.monotonic() - started < timeout + 1.5


def _answer(request: Request):
    """The good answer to ``request``, as :func:`trickle`'s arguments (after 8 header lines)."""
    header, blob = infer_answer(request)
    text = json.dumps(header).encode()
    return text + blob, 8, 1.0, {"Inference-Header-Content-Length": str(len(text))}


def _huge(how: str):
    def handler(request: Request, reply: Reply) -> None:
        if how == "content-length":
            reply.stream(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n".encode(), HUGE)
        else:
            reply.stream(f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{HUGE:x}\r\n".encode(), HUGE)
    return handler


@pytest.mark.parametrize("how", ["content-length", "chunked"])
@pytest.mark.parametrize("route", ["config", "infer"])
def test_an_oversized_answer_is_refused_before_it_is_read(metadata_json, route, how):
    with FakeKServe(metadata_json) as fake:
        fake.handlers[route] = _huge(how)
        with pytest.raises(UserError, match=r"answer is larger than .* can be"):
            with load_detector(fake.url(), timeout=30, retries=2) as detector:
                detector(FRAME)
        assert fake.count(route) == 1  # not retried
        assert fake.replies[-1].sent < TAKEN_BOUND


def test_an_oversized_grpc_answer_is_refused(metadata_json):
    """Outputs of a consistent shape, far larger than the model's: gRPC's receive limit is set from the
    model's output sizes."""
    shapes = {name: (shape[0] * 1000, shape[1]) for name, shape in OUTPUTS.items()}
    with FakeGrpc(metadata_json, infer=lambda request, context: grpc_outputs(request, context, shapes)) as fake:
        with load_detector(fake.url(), timeout=30, retries=2) as detector:
            with pytest.raises(UserError, match=r"answer is larger than .* can be"):
                detector(FRAME)
        assert fake.count("infer") == 1


def _edited(edit):
    """An infer handler answering the good answer after ``edit(header, blob) -> (header, blob)``."""
    def handler(request: Request, reply: Reply) -> None:
        binary_answer(reply, *edit(*infer_answer(request)))
    return handler


def _set_output(index: int, **fields):
    def edit(header, blob):
        header["outputs"][index].update(fields)
        return header, blob
    return edit


def _all_json(change):
    """An infer handler answering all JSON (values in ``data``), the last output's values after ``change``."""
    def handler(request: Request, reply: Reply) -> None:
        header, blob = infer_answer(request)
        offset = 0
        for output in header["outputs"]:
            size = output["parameters"].pop("binary_data_size")
            output["data"] = np.frombuffer(blob[offset:offset + size], np.float32).tolist()
            offset += size
        header["outputs"][-1]["data"] = change(header["outputs"][-1]["data"])
        reply.json(header)
    return handler


MALFORMED_INFER = {
    "values that are not numbers": (_all_json(lambda data: ["x"] + data[1:]), "not numbers"),
    "values nested": (_all_json(lambda data: [data[:6], data[6:]]), "values"),
    "not JSON": (lambda request, reply: reply.answer(200, b"{\"outputs\": [", {"Content-Type": "application/json"}),
                 "not JSON"),
    "a wrong shape": (_edited(_set_output(1, shape=[1, 3234, 5])), "shape"),
    "a wrong datatype": (_edited(_set_output(1, datatype="FP16")), "datatype"),
    "an output missing": (_edited(lambda h, b: ({"outputs": h["outputs"][:1]}, b[:1 * 3234 * 4 * 4])), "cls_logits"),
    "binary sizes beyond the body": (_edited(_set_output(0, parameters={"binary_data_size": 10 ** 9})), "bytes"),
    "outputs not a list": (_edited(lambda h, b: ({"outputs": {"a": 1}}, b)), "outputs"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_INFER))
def test_a_malformed_inference_answer_is_named_and_not_retried(metadata_json, kind):
    handler, named = MALFORMED_INFER[kind]
    with FakeKServe(metadata_json, {"infer": handler}) as fake:
        with load_detector(fake.url(), timeout=5, retries=3, retry_delay=0) as detector:
            with pytest.raises(UserError) as caught:
                detector(FRAME)
        message = str(caught.value)
        assert "the server's answer is not a KServe v2 inference response" in message and named in message
        assert "\n" not in message
        assert fake.count("infer") == 1


def test_an_answer_all_in_json_is_taken(metadata_json):
    """The values in JSON rather than binary: a KServe v2 answer too, and the same detections."""
    with FakeKServe(metadata_json) as fake:
        with load_detector(fake.url(), timeout=5) as detector:
            expected = detector(FRAME)
        fake.handlers["infer"] = _all_json(lambda data: data)
        with load_detector(fake.url(), timeout=5) as detector:
            got = detector(FRAME)
    assert len(expected) > 0 and np.array_equal(got.labels, expected.labels)
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3)


def _grpc_edit(edit):
    def handler(request, context):
        response = grpc_outputs(request, context)
        edit(response)
        return response
    return handler


MALFORMED_GRPC = {
    "raw bytes short": (lambda r: r.raw_output_contents.__setitem__(1, r.raw_output_contents[1][:-4]), "bytes"),
    "a wrong datatype": (lambda r: setattr(r.outputs[1], "datatype", "FP16"), "datatype"),
    "a wrong shape": (lambda r: r.outputs[0].shape.__setitem__(-1, 5), "shape"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_GRPC))
def test_a_malformed_grpc_answer_is_named_and_not_retried(metadata_json, kind):
    edit, named = MALFORMED_GRPC[kind]
    with FakeGrpc(metadata_json, infer=_grpc_edit(edit)) as fake:
        with load_detector(fake.url(), timeout=5, retries=3, retry_delay=0) as detector:
            with pytest.raises(UserError) as caught:
                detector(FRAME)
        message = str(caught.value)
        assert "the server's answer is not a KServe v2 inference response" in message and named in message
        assert fake.count("infer") == 1


@pytest.mark.parametrize("body", [b"{\"max_batch_size\": ", b"[1, 2]", b"{\"input\": 3, \"output\": []}",
                                  b"{\"input\": [true]}", b"\xff\xd8\xff"])
def test_a_malformed_configuration_is_named_and_not_retried(metadata_json, body):
    with FakeKServe(metadata_json, {"config": lambda request, reply: reply.answer(200, body)}) as fake:
        with pytest.raises(UserError, match="the server's answer is not a KServe v2 model configuration"):
            load_detector(fake.url(), timeout=5, retries=3, retry_delay=0)
        assert fake.count("config") == 1


def _failing(statuses):
    """Answer each status of ``statuses`` in turn, then the good answer."""
    left = list(statuses)

    def handler(request: Request, reply: Reply) -> None:
        if left:
            reply.json({"error": "busy"}, left.pop(0))
        else:
            binary_answer(reply, *infer_answer(request))
    return handler


@pytest.mark.parametrize("statuses, calls, ok", [([500, 503], 3, True), ([400], 1, False), ([404], 1, False)])
def test_server_errors_are_retried_refusals_are_not(metadata_json, statuses, calls, ok):
    with FakeKServe(metadata_json, {"infer": _failing(statuses)}) as fake:
        with load_detector(fake.url(), timeout=5, retries=2, retry_delay=0) as detector:
            if ok:
                assert detector(FRAME) is not None
            else:
                with pytest.raises(UserError, match=r"the server refused the request \(.*40\d.*busy\)"):
                    detector(FRAME)
        assert fake.count("infer") == calls


BAD_URLS = {
    "http://127.0.0.1:99999/m": "port 99999",
    "grpc://127.0.0.1:99999/m": "port 99999",
    "http://[::1/m": "[::1",
    "http://127.0.0.1:abc/m": "port 'abc'",
    "http://127.0.0.1:8000/m?x=1": "?",
    "http://user@127.0.0.1:8000/m": "@",
}


@pytest.mark.parametrize("app", ["apps/camera.py", "apps/evaluate.py"])
def test_bad_model_urls_are_one_line_exit_2(app, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "frame.jpg"), FRAME)  # a source the camera app takes: the URL is what fails
    for url, named in BAD_URLS.items():
        extra = ["--source", str(tmp_path), "--headless"] if app.endswith("camera.py") else []
        proc = subprocess.run([sys.executable, app, "--model", url, *extra], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (url, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"error: {url}: ") and named in lines[0], (url, proc.stderr)
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
