"""The KServe v2 calls the runtime makes, over gRPC (tritonclient's gRPC client): the model's configuration,
the models a server lists, inference, and inference started without waiting (``async_infer``).

Every call carries a deadline of ``timeout`` seconds (gRPC's own, which bounds the whole call), and the
channel refuses messages larger than ``receive_limit`` bytes (the model's outputs for the largest batch,
set by the pool once the configuration is known). Answers are checked against the configuration
(:mod:`runtimes.kserve_config`); gRPC's errors become the failure types of :mod:`runtimes.kserve_failures`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from runtimes.errors import UserError
from runtimes.kserve_address import Endpoint
from runtimes.kserve_config import INFERENCE, MAX_ANSWER, ModelConfig
from runtimes.kserve_failures import AnswerTooLarge, ConnectionFailure, MalformedAnswer, ServerStatus, one_line

Done = Callable[[Optional[Dict[str, np.ndarray]], Optional[BaseException]], None]
# Where an answer holds its values when not in raw_output_contents (ModelInferResponse's InferTensorContents).
_CONTENTS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "INT32": "int_contents", "INT64": "int64_contents",
             "FP32": "fp32_contents"}  # FP16 has no typed field: raw only
_NO_ANSWER = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")  # the connection's trouble, not the server's word


def import_grpc() -> Any:
    try:
        import tritonclient.grpc as client
    except ImportError:
        raise UserError("grpc:// URLs need tritonclient: pip install 'tritonclient[grpc]'") from None
    return client


class GrpcClient:
    """KServe v2 over gRPC to ``endpoint``'s server; ``receive_limit``: the largest answer, in bytes."""

    def __init__(self, endpoint: Endpoint, timeout: float, receive_limit: int) -> None:
        self.module = import_grpc()
        self.endpoint, self.timeout, self.receive_limit = endpoint, timeout, receive_limit
        self.client = self.module.InferenceServerClient(url=endpoint.address, channel_args=[
            ("grpc.max_receive_message_length", receive_limit), ("grpc.max_send_message_length", MAX_ANSWER)])

    def config(self) -> Any:
        return self._call(lambda: self.client.get_model_config(self.endpoint.model, as_json=True,
                                                               client_timeout=self.timeout))

    def models(self) -> Optional[List[str]]:
        """The models the server has: its repository index, else its statistics; None when it lists neither."""
        calls = ((self.client.get_model_repository_index, "models"), (self.client.get_inference_statistics,
                                                                      "model_stats"))
        for call, key in calls:
            try:
                found = self._call(functools.partial(call, as_json=True, client_timeout=self.timeout))
                names = [e["name"] for e in found.get(key, []) if isinstance(e.get("name"), str)]
            except Exception:  # restricted or absent on this server: try the next way
                continue
            if names:
                return sorted(set(names))
        return None

    def infer(self, config: ModelConfig, batch: np.ndarray) -> Dict[str, np.ndarray]:
        inputs, outputs = self._request(config, batch)
        result = self._call(lambda: self.client.infer(self.endpoint.model, inputs, outputs=outputs,
                                                      client_timeout=self.timeout))
        return decode_answer(result.get_response(), config, len(batch))

    def infer_async(self, config: ModelConfig, batch: np.ndarray, done: Done) -> None:
        """Start inference; ``done(outputs, None)`` or ``done(None, failure)`` follows, from gRPC's thread (or
        from this one, when the request cannot start)."""
        def callback(result: Any, error: Any) -> None:
            if error is not None:
                done(None, self._failure(error))
                return
            try:
                arrays = decode_answer(result.get_response(), config, len(batch))
            except BaseException as exc:
                done(None, exc)
                return
            done(arrays, None)

        try:
            inputs, outputs = self._request(config, batch)
            self.client.async_infer(self.endpoint.model, inputs, callback, outputs=outputs,
                                    client_timeout=self.timeout)
        except Exception as exc:
            done(None, self._failure(exc))

    def close(self) -> None:
        self.client.close()

    def _request(self, config: ModelConfig, batch: np.ndarray) -> Any:
        inputs = [self.module.InferInput(config.input.name, list(batch.shape), config.input.datatype)]
        inputs[0].set_data_from_numpy(batch)
        return inputs, [self.module.InferRequestedOutput(name) for name in config.output_names]

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> BaseException:
        """The failure type for one of tritonclient's errors (others pass as they are)."""
        from tritonclient.utils import InferenceServerException

        if not isinstance(exc, InferenceServerException):
            return ConnectionFailure(one_line(exc)) if isinstance(exc, OSError) else exc
        status = str(exc.status() or "").replace("StatusCode.", "")
        text = one_line(exc.message())
        if status == "DEADLINE_EXCEEDED":
            return ConnectionFailure(f"no complete answer within {self.timeout:g} s")
        if status in _NO_ANSWER or not status:
            return ConnectionFailure(text)
        if status == "RESOURCE_EXHAUSTED" and "larger than max" in text:
            return AnswerTooLarge(self.endpoint.url, text, self.receive_limit, "the model's outputs")
        if status == "INTERNAL" and "deserializ" in text.lower():
            return MalformedAnswer(self.endpoint.url, INFERENCE, f"not a protobuf message ({text})")
        return ServerStatus(status, text, server_fault=False)


def decode_answer(response: Any, config: ModelConfig, batch: int) -> Dict[str, np.ndarray]:
    """The outputs in a ModelInferResponse: each from its raw_output_contents entry, else its typed contents."""
    raw = response.raw_output_contents
    arrays: Dict[str, np.ndarray] = {}
    for index, output in enumerate(response.outputs):
        if output.name in arrays:
            raise MalformedAnswer(config.url, INFERENCE, f"output {output.name} is listed twice")
        if output.name not in config.output_names:
            continue
        if index < len(raw):
            data: Any = raw[index]
        else:
            data = list(getattr(output.contents, _CONTENTS.get(output.datatype, "fp32_contents")))
        arrays[output.name] = config.output(output.name, output.datatype, [int(d) for d in output.shape], data,
                                            batch)
    return config.check_answer(arrays)
