"""TensorRT's implicit INT8 calibration (TensorRT 8.5-10.x): batches, the calibrator, its cache.

Three concerns, as in NVIDIA's samples: :class:`PinnedBatcher` fills one reusable page-locked host buffer
from the shared :class:`CalibrationStream` (full batches only: TensorRT's calibrators take a fixed batch
size); :class:`CalibrationCache` stores TensorRT's scale table behind a header recording what it was made
from, and hands it back only when all of that still matches; :func:`make_calibrator` builds the
``IInt8EntropyCalibrator2`` (or MinMax) subclass that copies each batch to the GPU.

The batch must be the one TensorRT reads: for an explicit-batch network (every network here) TensorRT
takes the calibration shape from the network input, or from the calibration profile's OPT for a dynamic
batch, and reads that many bytes from the pointer ``get_batch`` returns; ``get_batch_size`` is not
consulted. The builder passes that batch (``export/tensorrt_build.py``).

TensorRT's Python bindings catch every exception a calibrator callback raises (python/src/infer/pyInt8.cpp:
printed, then "no more data" / "no cache"), so the callbacks here never raise into TensorRT: they keep the
first exception in ``error`` and stop feeding; the builder re-raises it once TensorRT returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from calibration.images import UnreadableImage
from calibration.stream import CalibrationStream
from runtimes.atomic import atomic_write_bytes
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

ALGORITHMS = ("entropy", "minmax")
CACHE_MAGIC = b"# ssd-edge calibration cache 1 "


def preprocessing_record(meta: ModelMetadata) -> Dict[str, Any]:
    """The preprocessing facts a calibration depends on."""
    return {"input": [meta.input_height, meta.input_width], "channel_order": meta.channel_order,
            "mean": meta.mean, "std": meta.std, "resize": "stretch, bilinear"}


class PinnedBatcher:
    """Yields the stream's full batches, each copied into the same host buffer.

    Args:
        stream: a :class:`CalibrationStream` built with ``drop_last=True`` and the calibrator's batch size.
        allocate: ``(shape, dtype) -> array``; pycuda's ``pagelocked_empty`` on a device (pinned memory makes
            the host-to-device copy a DMA), ``numpy.empty`` where there is no GPU.
    """

    def __init__(self, stream: CalibrationStream, allocate: Callable[[Tuple[int, ...], Any], np.ndarray]) -> None:
        if not stream.drop_last:
            raise ValueError("the calibration stream must drop its last partial batch")
        if len(stream) == 0:
            raise UserError(f"{len(stream.paths)} calibration images are fewer than one batch of "
                            f"{stream.batch_size}; pass more --calib-images or a smaller --calib-batch")
        self.stream = stream
        width, height = stream.preprocessor.size
        self.shape = (stream.batch_size, 3, height, width)
        self.host = allocate(self.shape, np.float32)
        self.batches_done = 0

    def __len__(self) -> int:
        return len(self.stream)

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.stream:
            np.copyto(self.host, batch)
            self.batches_done += 1
            yield self.host


class CalibrationCache:
    """TensorRT's calibration table at ``path``, valid only for the ``record`` it was made from.

    The file is a header line (``CACHE_MAGIC`` + the record as JSON) followed by TensorRT's own bytes.
    """

    def __init__(self, path: "str | Path", record: Dict[str, Any]) -> None:
        self.path = Path(path)
        self.record = json.loads(json.dumps(record, sort_keys=True))  # normalised: tuples become lists
        self.status = "none"  # none | reused | stale | written
        self.table: Optional[bytes] = None  # TensorRT's own table, once loaded or written

    def load(self) -> Optional[bytes]:
        """TensorRT's table when the cache matches the record, else None (the reason in ``status`` and
        printed). A file that is not ours is refused rather than overwritten."""
        if not self.path.is_file():
            return None
        data = self.path.read_bytes()
        if not data.startswith(CACHE_MAGIC) or b"\n" not in data:
            raise UserError(f"{self.path}: not a calibration cache written by this toolkit (no header), so "
                            "what it was made from is unknown; move it away or pass another --calib-cache")
        header, table = data.split(b"\n", 1)
        try:
            stored = json.loads(header[len(CACHE_MAGIC):].decode("utf-8"))
            if not isinstance(stored, dict):
                raise ValueError("not a JSON object")
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
            raise UserError(f"{self.path}: its header is corrupt; delete it to recalibrate") from None
        changed = sorted(k for k in set(stored) | set(self.record) if stored.get(k) != self.record.get(k))
        if changed:
            self.status = "stale"
            print(f"calibration cache {self.path} was made from a different {', '.join(changed)}; recalibrating")
            return None
        self.status = "reused"
        print(f"calibration cache {self.path}: made from the same model, images and settings; reusing it")
        self.table = table
        return table

    def save(self, table: bytes) -> None:
        header = CACHE_MAGIC + json.dumps(self.record, sort_keys=True).encode("utf-8") + b"\n"
        atomic_write_bytes(self.path, header + bytes(table))
        self.table = bytes(table)
        self.status = "written"


class _BatchFeed:
    """The calibrator methods TensorRT calls, shared by both calibrator classes below.

    ``table`` is the cache's table, loaded by the builder before the build (so that a cache this toolkit
    refuses stops the build: an exception raised in ``read_calibration_cache`` would be swallowed)."""

    def _setup(self, cuda: Any, batcher: PinnedBatcher, cache: CalibrationCache, table: Optional[bytes],
               progress: Optional[Callable[[int, int], None]]) -> None:
        self.cuda, self.batcher, self.cache, self.table, self.progress = cuda, batcher, cache, table, progress
        self.error: Optional[BaseException] = None
        self.device_input: Any = None
        self.stream: Any = None
        self.batches: Optional[Iterator[np.ndarray]] = None
        if table is None:  # device memory only when TensorRT will ask for batches
            self.device_input = cuda.mem_alloc(batcher.host.nbytes)
            self.stream = cuda.Stream()
            self.batches = iter(batcher)

    def get_batch_size(self) -> int:
        return self.batcher.shape[0]

    def get_batch(self, names: List[str]) -> Optional[List[int]]:
        if self.error is not None or self.batches is None:
            return None
        try:
            host = next(self.batches, None)
            if host is None:
                return None  # TensorRT's signal that the calibration data is exhausted
            self.cuda.memcpy_htod_async(self.device_input, host, self.stream)
            self.stream.synchronize()  # the host buffer is refilled by the next call
            if self.progress is not None:
                self.progress(self.batcher.batches_done, len(self.batcher))
            return [int(self.device_input)]
        except UnreadableImage as exc:
            self.error = UserError(f"a calibration image became unreadable during calibration ({exc}); fix or "
                                   "remove it and build again")
        except BaseException as exc:  # KeyboardInterrupt too: TensorRT would swallow it
            self.error = exc
        return None

    def read_calibration_cache(self) -> Optional[bytes]:
        return self.table

    def write_calibration_cache(self, cache: Any) -> None:
        if self.error is not None:
            return  # a calibration cut short: its table must not be saved and reused
        try:
            self.cache.save(bytes(cache))
        except BaseException as exc:  # swallowed by TensorRT otherwise
            self.error = exc

    def free(self) -> None:
        """Release the device buffer, stream and pinned batch buffer (call with the CUDA context current)."""
        from runtimes.tensorrt_support import free_pinned

        if self.device_input is not None:
            self.device_input.free()
        self.device_input = self.stream = self.batches = None
        free_pinned(self.batcher.host)
        self.batcher.host = None  # type: ignore[assignment]  # unusable once freed


def make_calibrator(cuda: Any, batcher: PinnedBatcher, cache: CalibrationCache, algorithm: str = "entropy",
                    progress: Optional[Callable[[int, int], None]] = None, table: Optional[bytes] = None) -> Any:
    """An ``IInt8EntropyCalibrator2`` (or ``IInt8MinMaxCalibrator``) fed by ``batcher``, for TensorRT < 11.

    ``table``: the cache's table when it is reused (TensorRT then asks for no batches). After the build,
    raise ``calibrator.error`` if set, and call ``calibrator.free()`` with the CUDA context current.
    The classes are defined here because their bases exist only once tensorrt is imported.
    """
    import tensorrt as trt

    if algorithm not in ALGORITHMS:
        raise UserError(f"unknown calibration algorithm '{algorithm}': choose {' or '.join(ALGORITHMS)}")

    # TensorRT's stubs type get_batch/read_calibration_cache without the None that its documentation
    # prescribes for "no more data"/"no cache", hence the ignores on the class lines.
    class EntropyCalibrator(_BatchFeed, trt.IInt8EntropyCalibrator2):  # type: ignore[misc]  # see above
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # the bindings require the explicit base init
            self._setup(cuda, batcher, cache, table, progress)

    class MinMaxCalibrator(_BatchFeed, trt.IInt8MinMaxCalibrator):  # type: ignore[misc]  # see above
        def __init__(self) -> None:
            trt.IInt8MinMaxCalibrator.__init__(self)
            self._setup(cuda, batcher, cache, table, progress)

    return EntropyCalibrator() if algorithm == "entropy" else MinMaxCalibrator()
