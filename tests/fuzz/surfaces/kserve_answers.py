"""The KServe client's answers: a fake KServe v2 server on 127.0.0.1 (tests/kserve_fake.py) answers the
configuration and inference requests of ``load_detector(url)(frame)`` with generated bodies and headers,
good ones among them; each case must end in the one-line error or valid detections, within its time and
memory limits. HTTP cases edit the configuration, the answer's JSON, its binary tensors, the split header,
the status and the HTTP framing; gRPC cases edit the inference response's outputs."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

from tests.fuzz.cases import FRAME, Case, Parser, check_detections, demo_meta, mutate, mutate_json, random_bytes
from tests.kserve_fake import FakeGrpc, FakeKServe, Reply, Request, demo_config, grpc_outputs, outputs_answer

TIMEOUT_S = 1.0  # each attempt's; a case that holds the client waits this long (twice with a retry)
SPLIT = "Inference-Header-Content-Length"
Handler = Callable[[Request, Reply], Any]


def _answering(status: int, body: bytes, headers: Dict[str, str]) -> Handler:
    return lambda request, reply: reply.answer(status, body, headers)


def _sending(data: bytes) -> Handler:
    return lambda request, reply: reply.raw(data)


def _config(rng: random.Random, meta_json: str) -> Tuple[str, Dict[str, Handler]]:
    good = demo_config(meta_json)
    if rng.random() < 0.3:
        what, body = random_bytes(rng) if rng.random() < 0.5 else mutate(json.dumps(good).encode(), rng)
    else:
        what, edited = mutate_json(good, rng)
        body = json.dumps(edited).encode()
    return f"configuration: {what}", {"config": _answering(200, body, {})}


def _infer_json(rng: random.Random) -> Tuple[str, Handler]:
    """The answer's JSON part edited, the binary part as it was."""
    header, blob = outputs_answer(1)
    what, header = mutate_json(header, rng)
    text = json.dumps(header).encode()
    return f"infer JSON: {what}", _answering(200, text + blob, {SPLIT: str(len(text))})


def _infer_values(rng: random.Random) -> Tuple[str, Handler]:
    """All JSON: the values in ``data`` (a valid answer), or with a value, the count or the nesting changed."""
    header, blob = outputs_answer(1)
    offset = 0
    for output in header["outputs"]:
        size = output["parameters"].pop("binary_data_size")
        output["data"] = [round(v, 4) for v in memoryview(blob[offset:offset + size]).cast("f").tolist()]
        offset += size
    change = rng.choice(["none", "none", "a string", "one value fewer", "nested"])
    data = header["outputs"][-1]["data"]
    if change == "a string":
        data[7] = "x"
    elif change == "one value fewer":
        data.pop()
    elif change == "nested":
        header["outputs"][-1]["data"] = [data[:6], data[6:]]
    return f"infer all JSON, {change}", _answering(200, json.dumps(header).encode(), {})


def _infer_binary(rng: random.Random) -> Tuple[str, Handler]:
    header, blob = outputs_answer(1)
    text = json.dumps(header).encode()
    split = str(len(text))
    how = rng.choice(["tensors", "split", "split", "JSON bytes"])
    if how == "tensors":
        what, blob = mutate(blob, rng)
    elif how == "split":
        split = rng.choice(["-1", "0", "abc", str(len(text) - 1), str(len(text) + 5), "99999999999", ""])
        what = f"= {split!r}"
    else:
        what, text = mutate(text, rng)
    return f"infer binary answer, {how} {what}", _answering(200, text + blob, {SPLIT: split})


def _close(request: Request, reply: Reply) -> None:
    reply.sock.shutdown(socket.SHUT_RDWR)


def _infer_framing(rng: random.Random) -> Tuple[str, Handler]:
    """Answers whose status or HTTP framing is off."""
    head = b"HTTP/1.1 200 OK\r\n"
    choice = rng.randrange(8)
    if choice == 0:
        status = rng.choice([500, 502, 503, 400, 404, 204, 302, 418])
        body = rng.choice([b"", b"{\"error\": \"x\"}", b"\xff\n" * 3])
        return f"status {status}, body {body[:20]!r}", _answering(status, body, {})
    if choice == 1:
        what, data = random_bytes(rng)
        return f"raw bytes: {what}", _sending(data)
    framings = [
        ("a bad chunk size", head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("a header line of 70000 bytes", head + b"X: " + b"a" * 70000 + b"\r\n\r\n"),
        ("200 header lines", head + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"),
        ("a Content-Length beyond the body, held open", head + b"Content-Length: 100\r\n\r\n{}"),
        ("an announced 2 GiB answer", head + b"Content-Length: 2147483648\r\n\r\n" + b"\0" * 65536),
    ]
    if choice < 2 + len(framings):
        what, data = framings[choice - 2]
        return what, _sending(data)
    return "closed without an answer", _close


def _grpc_infer(rng: random.Random) -> Tuple[str, Callable[..., Any]]:
    """A ModelInferResponse edited: datatype, shape, raw bytes, an output missing or twice, typed contents."""
    how = rng.choice(["none", "datatype", "shape", "raw bytes", "missing", "twice", "typed contents"])

    def handler(request: Any, context: Any) -> Any:
        response = grpc_outputs(request, context)
        if how == "datatype":
            response.outputs[1].datatype = "FP16"
        elif how == "shape":
            response.outputs[0].shape[-1] = 5
        elif how == "raw bytes":
            response.raw_output_contents[1] = response.raw_output_contents[1][:-4]
        elif how == "missing":
            del response.outputs[1]
            del response.raw_output_contents[1]
        elif how == "twice":
            response.outputs.add().CopyFrom(response.outputs[0])
            response.raw_output_contents.append(response.raw_output_contents[0])
        elif how == "typed contents":
            raw = response.raw_output_contents[1]
            del response.raw_output_contents[1:]
            response.outputs[1].contents.fp32_contents.extend(memoryview(raw).cast("f").tolist())
        return response
    return f"gRPC infer: {how}", handler


def make_kserve_answer(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    meta_json = demo_meta().to_json()
    kind = index % 7
    retries = rng.choice([0, 0, 1])
    what = f"(retries {retries})"
    if kind == 6:
        how, grpc_handler = _grpc_infer(rng)
        return Case(f"{how} {what}", lambda: _detect(FakeGrpc(meta_json, infer=grpc_handler), retries, True),
                    check_detections)
    if kind <= 1:
        how, handlers = ("good answers", {}) if kind == 0 else _config(rng, meta_json)
    else:
        how, infer = [_infer_json, _infer_values, _infer_binary, _infer_framing][kind - 2](rng)
        handlers = {"infer": infer}
    answered = kind != 5 or how.startswith("status")  # a whole HTTP answer came back
    return Case(f"{how} {what}", lambda: _detect(FakeKServe(meta_json, handlers), retries, answered),
                check_detections)


def _detect(server: Any, retries: int, answered: bool) -> Any:
    """Detections of one frame through ``server``; an error must name the answer for what it was: a server
    that answered did not fail to answer, and an answer found malformed or too large was not asked for again
    (a mislabelled error is raised as an AssertionError, which the harness counts as mishandled)."""
    from runtimes.errors import UserError
    from runtimes.loader import load_detector

    with server:
        try:
            with load_detector(server.url(), timeout=TIMEOUT_S, retries=retries, retry_delay=0) as detector:
                return detector(FRAME)
        except UserError as exc:
            message = str(exc)
            if answered and ("no answer from the server" in message or "cannot reach" in message):
                raise AssertionError(f"an answer reported as none: {message}") from None
            final = "not a KServe v2" in message or "larger than" in message
            if final and max(server.count("config"), server.count("infer")) > 1:
                raise AssertionError(f"asked again after: {message}") from None
            raise


PARSERS = [Parser("kserve answers", make_kserve_answer, timeout_s=15, ci_count=42, full_count=210)]
