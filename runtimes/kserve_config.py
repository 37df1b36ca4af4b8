"""The served model as its KServe v2 configuration describes it, and the checks of every answer against it.

:meth:`ModelConfig.parse` reads Triton's JSON model configuration (HTTP ``GET /v2/models/NAME/config``,
or gRPC's ``ModelConfig`` as JSON, where 64-bit numbers are strings): the input, the outputs with their
data types and dims (-1 where the model leaves a size open), ``max_batch_size`` (0: the batch is in the
dims) and the string parameters. Anything else there is a :class:`MalformedAnswer`.

From it follow the most bytes an inference answer may hold (:meth:`ModelConfig.answer_limit`: the outputs of
the batch sent, plus room for the JSON around them) and the check of each output in an answer
(:meth:`ModelConfig.output`): its data type and shape as configured, its data exactly that many values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Union

import numpy as np

from runtimes.kserve_failures import MalformedAnswer
from runtimes.served_model import NUMPY_TYPES

# The data types a model of this toolkit has, by KServe v2 name ("FP32"; a configuration writes "TYPE_FP32").
DATATYPES = {name[len("TYPE_"):]: np.dtype(numpy_name) for name, numpy_name in NUMPY_TYPES.items()}
CONFIG_ANSWER_LIMIT = 16 << 20  # bytes of a configuration or model list (the metadata JSON in it: ~1 KiB)
ANSWER_JSON_ALLOWANCE = 64 << 10  # bytes of an inference answer's JSON part besides the values: names, shapes
JSON_CHARS_PER_VALUE = 32  # the longest a number takes in JSON ("-1.2345678901234567e-300, ")
OPEN_DIM_VALUES = 16 << 20  # values per image of an output with an open (-1) dim: 4x SSD512's 81-class scores
MAX_ANSWER = (1 << 31) - 1  # gRPC's largest message, and more than any detector's outputs
INFERENCE = "inference response"
CONFIGURATION = "model configuration"


@dataclass(frozen=True)
class ConfigTensor:
    """One input or output: ``name``, ``datatype`` ("FP32"), ``dims`` per the configuration (-1: open)."""

    name: str
    datatype: str
    dims: List[int]

    @property
    def itemsize(self) -> int:
        return DATATYPES[self.datatype].itemsize

    def values(self) -> int:
        """The most values of one configured tensor (an open dim: :data:`OPEN_DIM_VALUES` in all)."""
        if any(d < 0 for d in self.dims):
            return OPEN_DIM_VALUES
        return int(np.prod(self.dims, dtype=object)) if self.dims else 1


@dataclass
class ModelConfig:
    """The configuration of a served model (see the module docstring)."""

    url: str
    input: ConfigTensor
    outputs: List[ConfigTensor]
    max_batch_size: int  # 0: no batch axis outside the dims (a static batch)
    parameters: Dict[str, str]

    @classmethod
    def parse(cls, raw: Any, url: str) -> "ModelConfig":
        """From the JSON configuration ``raw`` (a dict; gRPC's may wrap it in ``{"config": ...}``)."""
        config = raw.get("config", raw) if isinstance(raw, dict) else raw
        if not isinstance(config, dict):
            raise MalformedAnswer(url, CONFIGURATION, f"a JSON object was expected, not {type(config).__name__}")
        inputs = _tensors(config.get("input", []), "input", url)
        outputs = _tensors(config.get("output", []), "output", url)
        if not inputs or not outputs:
            raise MalformedAnswer(url, CONFIGURATION, "it declares no inputs or no outputs")
        max_batch = _whole(config.get("max_batch_size", 0), "max_batch_size", url)
        parameters = config.get("parameters") or {}
        if not isinstance(parameters, dict) or not all(isinstance(v, dict) for v in parameters.values()):
            raise MalformedAnswer(url, CONFIGURATION, "parameters is not an object of {string_value: ...} objects")
        strings = {str(k): v.get("string_value", "") for k, v in parameters.items()}
        if not all(isinstance(v, str) for v in strings.values()):
            raise MalformedAnswer(url, CONFIGURATION, "a parameter's string_value is not a string")
        return cls(url, inputs[0], outputs, max_batch, strings)

    @property
    def output_names(self) -> List[str]:
        return [o.name for o in self.outputs]

    def shape(self, spec: ConfigTensor, batch: int) -> List[int]:
        """The shape of ``spec`` for a request of ``batch`` images (-1 where open)."""
        return [batch] + spec.dims if self.max_batch_size > 0 else list(spec.dims)

    def answer_limit(self, batch: int, binary: bool = True) -> int:
        """The most bytes an answer to ``batch`` images may hold: the outputs as binary tensors (or as JSON
        numbers), plus the JSON around them."""
        images = batch if self.max_batch_size > 0 else 1  # a static batch is in the dims
        values = [images * o.values() for o in self.outputs]
        data = sum(v * o.itemsize for v, o in zip(values, self.outputs)) if binary else \
            sum(values) * JSON_CHARS_PER_VALUE
        return min(MAX_ANSWER, ANSWER_JSON_ALLOWANCE + data)

    def output(self, name: str, datatype: Any, shape: Any, data: "Union[bytes, memoryview, Sequence[Any]]",
               batch: int) -> np.ndarray:
        """The answer's tensor ``name`` as an array, after checking its ``datatype`` and ``shape`` against the
        configuration and that ``data`` (raw bytes, or JSON values) holds exactly that many values."""
        spec = next(o for o in self.outputs if o.name == name)
        if datatype != spec.datatype:
            raise MalformedAnswer(self.url, INFERENCE, f"output {name} has datatype {str(datatype)[:20]!r}, the "
                                  f"configuration says {spec.datatype}")
        expected = self.shape(spec, batch)
        if not _is_shape(shape) or len(shape) != len(expected) or \
                any(e not in (-1, s) for e, s in zip(expected, shape)):
            raise MalformedAnswer(self.url, INFERENCE, f"output {name} has shape {str(shape)[:60]}, the "
                                  f"configuration says {expected} for {batch} image(s)")
        count = int(np.prod(shape, dtype=object)) if shape else 1
        dtype = DATATYPES[spec.datatype]
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) != count * spec.itemsize:
                raise MalformedAnswer(self.url, INFERENCE, f"output {name} has {len(data)} bytes of data, its shape "
                                      f"{list(shape)} needs {count * spec.itemsize}")
            return np.frombuffer(data, dtype=dtype).reshape(shape)
        return _from_values(data, dtype, count, shape, name, self.url)

    def check_answer(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """``arrays`` if every configured output is there (by name)."""
        missing = [n for n in self.output_names if n not in arrays]
        if missing:
            raise MalformedAnswer(self.url, INFERENCE, f"output(s) {', '.join(missing)} missing")
        return {n: arrays[n] for n in self.output_names}


def _from_values(data: Any, dtype: Any, count: int, shape: List[int], name: str, url: str) -> np.ndarray:
    if not isinstance(data, list) or len(data) != count:
        size = len(data) if isinstance(data, list) else type(data).__name__
        raise MalformedAnswer(url, INFERENCE, f"output {name} has {size} values, its shape {list(shape)} needs "
                              f"{count}")
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedAnswer(url, INFERENCE, f"output {name} holds values that are not numbers ({exc!s:.80})") \
            from None
    if array.shape != (count,):
        raise MalformedAnswer(url, INFERENCE, f"output {name}'s data is nested, not {count} values in a row")
    return array.reshape(shape)


def _is_shape(shape: Any) -> bool:
    return isinstance(shape, list) and all(type(d) is int and 0 <= d < 1 << 40 for d in shape)


def _whole(value: Any, field: str, url: str, least: int = 0) -> int:
    """An int from JSON (gRPC's JSON writes 64-bit ints as strings)."""
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 20:
        value = int(value)
    if type(value) is not int or not least <= value < 1 << 40:
        raise MalformedAnswer(url, CONFIGURATION, f"{field} is {str(value)[:30]!r}, not a whole number >= {least}")
    return value


def _tensors(entries: Any, kind: str, url: str) -> List[ConfigTensor]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise MalformedAnswer(url, CONFIGURATION, f"{kind} is not a list of tensor objects")
    specs = []
    for entry in entries:
        name, datatype = entry.get("name"), entry.get("data_type", "TYPE_FP32")
        if not isinstance(name, str) or not name.isprintable() or not 0 < len(name) <= 256:
            raise MalformedAnswer(url, CONFIGURATION, f"an {kind} without a name of 1 to 256 printable characters")
        if not isinstance(datatype, str) or datatype[len("TYPE_"):] not in DATATYPES:
            raise MalformedAnswer(url, CONFIGURATION, f"{kind} {name} has data_type {str(datatype)[:20]!r}, not "
                                  "one of TYPE_" + ", TYPE_".join(DATATYPES))
        dims = entry.get("dims", [])
        if not isinstance(dims, list):
            raise MalformedAnswer(url, CONFIGURATION, f"{kind} {name}'s dims are not a list")
        whole = [_whole(d, f"a dim of {kind} {name}", url, least=-1) for d in dims]
        if 0 in whole:
            raise MalformedAnswer(url, CONFIGURATION, f"{kind} {name} has a dim of 0")
        specs.append(ConfigTensor(name, datatype[len("TYPE_"):], whole))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise MalformedAnswer(url, CONFIGURATION, f"{kind} names repeat: {', '.join(names)[:80]}")
    return specs

