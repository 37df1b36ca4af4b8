"""The KServe v2 calls the runtime makes, over HTTP/REST: the model's configuration, the models a server
lists, inference with the binary tensor extension.

An inference request is a JSON header followed by the input's bytes (``Inference-Header-Content-Length``
says where the JSON ends); the answer is the same (outputs as ``binary_data_size`` bytes each, in the
order listed), or all JSON with the values in ``data``. Every exchange goes through
:class:`~runtimes.kserve_http_exchange.BoundedConnection` (deadline, size), every answer is checked
against the configuration (:mod:`runtimes.kserve_config`).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import numpy as np

from runtimes.kserve_address import Endpoint
from runtimes.kserve_config import CONFIG_ANSWER_LIMIT, CONFIGURATION, INFERENCE, ModelConfig
from runtimes.kserve_failures import MalformedAnswer, ServerStatus
from runtimes.kserve_http_exchange import Answer, BoundedConnection

SPLIT_HEADER = "Inference-Header-Content-Length"
ERROR_ANSWER_LIMIT = 64 << 10  # bytes of an error answer: a message
MODEL_LIST = "model list"


class HttpClient:
    """KServe v2 over HTTP to ``endpoint``'s server (one connection; one thread at a time)."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.connection = BoundedConnection(endpoint, timeout)
        self.model_path = f"/v2/models/{quote(endpoint.model, safe='')}"

    def config(self) -> Any:
        """The model's configuration as Triton's JSON (checked by :meth:`ModelConfig.parse`)."""
        return self._json("GET", f"{self.model_path}/config", CONFIGURATION)

    def models(self) -> Optional[List[str]]:
        """The models the server has: its repository index, else its statistics (PyTriton restricts the
        repository API); None when it lists neither."""
        for method, path, key in (("POST", "/v2/repository/index", None), ("GET", "/v2/models/stats", "model_stats")):
            try:
                found = self._json(method, path, MODEL_LIST, b"{}" if method == "POST" else None)
                entries = found.get(key, []) if key else found
                names = [e["name"] for e in entries if isinstance(e.get("name"), str)]
            except Exception:  # restricted, absent or unreadable on this server: try the next way
                continue
            if names:
                return sorted(set(names))
        return None

    def infer(self, config: ModelConfig, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """The outputs for ``batch`` (float32, batch axis first), checked against ``config``."""
        header = json.dumps({
            "inputs": [{"name": config.input.name, "shape": list(batch.shape), "datatype": config.input.datatype,
                        "parameters": {"binary_data_size": batch.nbytes}}],
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in config.output_names],
        }).encode()
        data = np.ascontiguousarray(batch).data.cast("B")
        headers = {"Content-Type": "application/octet-stream", SPLIT_HEADER: str(len(header)),
                   "Content-Length": str(len(header) + len(data))}

        def limit(response: Any) -> "tuple[int, str]":
            if response.status != 200:
                return ERROR_ANSWER_LIMIT, "an error message"
            return config.answer_limit(len(batch), binary=response.getheader(SPLIT_HEADER) is not None), \
                "the model's outputs"

        answer = self.connection.exchange("POST", f"{self.model_path}/infer", (header, data), headers, limit, INFERENCE)
        return decode_answer(self._checked(answer), answer.headers.get(SPLIT_HEADER), config, len(batch))

    def close(self) -> None:
        self.connection.close()

    def _json(self, method: str, path: str, what: str, body: Optional[bytes] = None) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}

        def limit(response: Any) -> "tuple[int, str]":
            return (CONFIG_ANSWER_LIMIT, f"a {what}") if response.status == 200 else (ERROR_ANSWER_LIMIT,
                                                                                       "an error message")

        answer = self.connection.exchange(method, path, body, headers, limit, what)
        return parse_json(self._checked(answer), self.endpoint.url, what)

    def _checked(self, answer: Answer) -> bytearray:
        """The body of a 200 answer; any other status is a :class:`ServerStatus` (5xx: the server's fault)."""
        if answer.status == 200:
            return answer.body
        try:
            text = str(json.loads(answer.body)["error"])
        except Exception:  # not Triton's {"error": "..."}: the body is the message
            text = answer.body[:1000].decode("utf-8", "replace")
        raise ServerStatus(str(answer.status), text, server_fault=answer.status >= 500)


def parse_json(body: "bytes | bytearray | memoryview", url: str, what: str) -> Any:
    """The JSON document in ``body``; anything else is a :class:`MalformedAnswer`."""
    try:
        return json.loads(bytes(body).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedAnswer(url, what, f"not JSON ({str(exc)[:80]})") from None


def decode_answer(body: bytearray, split: Optional[str], config: ModelConfig, batch: int) -> Dict[str, np.ndarray]:
    """The outputs of an inference answer: JSON (up to ``split`` bytes, when the split header was sent),
    then each output's binary data in the order listed, or its JSON ``data``."""
    url = config.url
    if split is not None and not (split.isdigit() and int(split) <= len(body)):
        raise MalformedAnswer(url, INFERENCE, f"{SPLIT_HEADER} {split[:20]!r} is not a size within the answer's "
                              f"{len(body)} bytes")
    end = int(split) if split is not None else len(body)
    document = parse_json(memoryview(body)[:end], url, INFERENCE)
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise MalformedAnswer(url, INFERENCE, "'outputs' is not a list of objects")
    binary, offset = memoryview(body)[end:], 0
    arrays: Dict[str, np.ndarray] = {}
    for output in outputs:
        name, parameters = output.get("name"), output.get("parameters") or {}
        if not isinstance(name, str):
            raise MalformedAnswer(url, INFERENCE, "an output without a name")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if type(size) is not int or not 0 <= size <= len(binary) - offset:
                raise MalformedAnswer(url, INFERENCE, f"output {name[:40]!r}'s binary_data_size {str(size)[:20]!r} "
                                      f"is beyond the {len(binary) - offset} bytes left in the answer")
            data: Any = binary[offset:offset + size]
            offset += size
        else:
            data = output.get("data")
        if name in arrays:
            raise MalformedAnswer(url, INFERENCE, f"output {name} is listed twice")
        if name in config.output_names:
            arrays[name] = config.output(name, output.get("datatype"), output.get("shape"), data, batch)
    if offset != len(binary):
        raise MalformedAnswer(url, INFERENCE, f"{len(binary) - offset} bytes of binary data belong to no output")
    return config.check_answer(arrays)
