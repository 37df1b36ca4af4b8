"""The KServe runtime (runtimes/kserve_runner.py) against a real Triton server: ``apps/serve.py`` started here
on free 127.0.0.1 ports, in the server environment ``.ci/triton_env.sh`` makes (nvidia-pytriton's
tritonserver; the network runs in the toolkit's ONNX Runtime runner inside it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

from runtimes.errors import UserError
from tests.conftest import ROOT

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed: pip install 'tritonclient[http,grpc]'")
pytest.importorskip("tritonclient.http", reason="tritonclient is not installed: pip install 'tritonclient[http,grpc]'")

SERVER_PYTHON = ROOT / ".cache" / "triton-venv" / "bin" / "python"
UNAVAILABLE = ROOT / ".cache" / "triton-venv.unavailable"
START_TIMEOUT_S = 90


def _server_missing() -> str:
    if UNAVAILABLE.is_file():
        return f"no Triton server environment: {UNAVAILABLE.read_text().strip()}"
    if not SERVER_PYTHON.is_file():
        return "no Triton server environment: run bash .ci/triton_env.sh (creates .cache/triton-venv)"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``apps/serve.py`` in its own process group (tritonserver and the backend stub are its children, so
    killing the group kills the whole server)."""

    def __init__(self, model: Path, *args: str, http_port: Optional[int] = None,
                 grpc_port: Optional[int] = None) -> None:
        self.http_port, self.grpc_port = http_port or free_port(), grpc_port or free_port()
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"ssd-edge-serve-{self.http_port}.log"
        command = [str(SERVER_PYTHON), str(ROOT / "apps" / "serve.py"), "--model", str(model), "--name", "ssd",
                   "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port), *args]
        self.log_file = open(self.log, "w")  # closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT, cwd=ROOT,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "serving http://" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text().splitlines()[-15:])
                self.stop()
                pytest.fail(f"apps/serve.py did not start (exit {self.process.returncode}):\n{tail}")
            time.sleep(0.2)

    def url(self, scheme: str, name: str = "ssd") -> str:
        port = self.grpc_port if scheme == "grpc" else self.http_port
        return f"{scheme}://127.0.0.1:{port}/{name}"

    def kill(self) -> None:
        """SIGKILL to the whole server at once: no orderly shutdown, connections just drop."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        else:
            try:  # its children may outlive a dead serve.py
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log_file.close()


@pytest.fixture(scope="session")
def served_model(demo_model):
    """The demo model with a dynamic batch axis (what the server batches)."""
    from export.demo_model import demo_onnx

    return demo_onnx(verbose=False, dynamic_batch=True)


@pytest.fixture(scope="session")
def server(served_model):
    missing = _server_missing()
    if missing:
        pytest.skip(missing)
    srv = Server(served_model, "--max-batch", "8", "--queue-delay-us", "500")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def images(voc_mini) -> List[np.ndarray]:
    import cv2

    out = []
    for path in sorted((voc_mini / "VOCdevkit" / "VOC2007" / "JPEGImages").glob("*.jpg")):
        image = cv2.imread(str(path))
        assert image is not None, path
        out.append(image)
    return out


@pytest.fixture(scope="session")
def local(served_model, images):
    """The local ONNX Runtime detections of every image, one call each (the reference)."""
    from runtimes.loader import load_detector

    detector = load_detector(served_model, max_batch=1)
    return [detector(image) for image in images]


def assert_same(got, expected) -> None:
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert np.array_equal(a.labels, b.labels), f"image {i}: labels differ"
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3, err_msg=f"image {i}: boxes")
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, err_msg=f"image {i}: scores")


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_served_detections_equal_the_local_runtime(server, images, local, scheme):
    from runtimes.kserve_runner import KServeDetector
    from runtimes.loader import load_detector

    with load_detector(server.url(scheme)) as detector:
        assert isinstance(detector, KServeDetector) and detector.max_batch == 8  # the served max_batch_size
        assert detector.meta.arch == "ssdlite320_mobilenet_v3_large" and detector.class_names[1:]
        assert_same(detector.detect_batch(images), local)  # batches of 8
        assert_same([detector(image) for image in images[:3]], local[:3])
        assert sum(len(d) for d in local) > 0


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_requests_in_flight_come_back_in_order(server, images, local, scheme):
    from runtimes.loader import load_detector

    with load_detector(server.url(scheme), max_batch=3) as detector:
        with detector.requests(4) as requests:
            for start in range(0, len(images), 3):
                requests.submit(images[start:start + 3], tag=start)
            results = list(requests.results(wait=True))
    assert [r.tag for r in results] == list(range(0, len(images), 3))
    assert_same([d for r in results for d in r.detections], local)
    assert all(r.timings["inference"] > 0 for r in results)


def test_eight_concurrent_clients_get_their_own_results(server, images, local):
    """Eight clients (HTTP and gRPC), each with its own detector and its own image order, at once: the
    server batches their requests together, and each gets the detections of its own images."""
    from runtimes.loader import load_detector

    got: Dict[int, list] = {}
    errors: List[BaseException] = []
    start = threading.Barrier(8)
    before = served_counts(server)

    def client(k: int) -> None:
        order = [(k * 5 + i) % len(images) for i in range(len(images))]
        try:
            with load_detector(server.url("grpc" if k % 2 else "http"), max_batch=1 + k % 3) as detector:
                start.wait(30)
                got[k] = [(i, detector(images[i])) for i in order]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(got) == list(range(8))
    for results in got.values():
        assert_same([d for _, d in results], [local[i] for i, _ in results])
    after = served_counts(server)
    images_served, network_calls = after[0] - before[0], after[1] - before[1]
    assert images_served == 8 * len(images)
    assert network_calls < images_served  # Triton joined concurrent requests into batches


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_one_detector_made_here_serves_calls_from_other_threads(server, images, local, scheme):
    """Made on this thread, called from four others (the HTTP client's gevent connections belong to one
    thread: each calling thread gets its own)."""
    from concurrent.futures import ThreadPoolExecutor

    from runtimes.loader import load_detector

    with load_detector(server.url(scheme)) as detector:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(detector, images))
    assert_same(got, local)


def served_counts(server: Server):
    """(images inferred, batches executed) so far, from Triton's statistics API."""
    import tritonclient.http as client

    stats = client.InferenceServerClient(f"127.0.0.1:{server.http_port}").get_inference_statistics("ssd")
    model = stats["model_stats"][0]
    return int(model["inference_count"]), int(model["execution_count"])


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_wrong_model_name_lists_the_served_models(server, scheme):
    from runtimes.loader import load_detector

    with pytest.raises(UserError, match=r"has no model 'nope'; it serves ssd \(e\.g\. " + scheme):
        load_detector(server.url(scheme, "nope"))


def test_no_server_at_the_address_is_one_clear_error():
    from runtimes.loader import load_detector

    port = free_port()
    with pytest.raises(UserError, match=f"cannot reach a KServe server at 127.0.0.1:{port}"):
        load_detector(f"grpc://127.0.0.1:{port}/ssd", timeout=2)


@pytest.fixture(scope="module")
def bare_server(served_model):
    """A server without the metadata parameter (as a hand-written config.pbtxt would be)."""
    missing = _server_missing()
    if missing:
        pytest.skip(missing)
    srv = Server(served_model, "--no-metadata-parameter")
    yield srv
    srv.stop()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_server_without_the_metadata_parameter_says_what_to_add(bare_server, served_model, images, local, scheme):
    from runtimes.loader import load_detector

    with pytest.raises(UserError) as caught:
        load_detector(bare_server.url(scheme))
    message = str(caught.value)
    assert "has no ssd_edge.metadata parameter" in message
    assert 'parameters { key: "ssd_edge.metadata" value { string_value:' in message
    assert "--target triton" in message and "metadata=" in message
    with load_detector(bare_server.url(scheme), metadata=served_model) as detector:  # what the message offers
        assert_same(detector.detect_batch(images[:4]), local[:4])


@pytest.mark.slow
def test_a_killed_server_is_one_clear_error_within_the_timeout_then_retries_reach_a_restarted_one(
        served_model, images, local):
    """Killed mid-run: a sync loop (HTTP) and requests in flight (gRPC) each end in one ServingError, soon
    (connections drop; bounded by timeout x attempts); with retries, a request waiting through a restart on the
    same ports succeeds."""
    from runtimes.kserve_runner import ServingError
    from runtimes.loader import load_detector

    missing = _server_missing()
    if missing:
        pytest.skip(missing)
    srv = Server(served_model)
    try:
        timeout, retries, delay = 3.0, 1, 0.2
        bound = (retries + 1) * timeout + retries * delay + 2.0
        http = load_detector(srv.url("http"), timeout=timeout, retries=retries, retry_delay=delay)
        grpc = load_detector(srv.url("grpc"), timeout=timeout, retries=retries, retry_delay=delay)
        patient = load_detector(srv.url("grpc"), timeout=2.0, retries=60, retry_delay=0.5)
        assert_same([http(images[0])], local[:1])
        errors: List[BaseException] = []
        done_after_kill: List[float] = []

        def sync_loop() -> None:
            try:
                for i in range(10_000):
                    http(images[i % len(images)])
            except BaseException as exc:
                done_after_kill.append(time.monotonic())
                errors.append(exc)

        loop = threading.Thread(target=sync_loop)
        loop.start()
        requests = grpc.requests(4)
        served = 0
        grpc_error: Optional[BaseException] = None
        kill_time = 0.0
        try:
            for i in range(10_000):
                if i == 12:
                    kill_time = time.monotonic()
                    srv.kill()
                requests.submit([images[i % len(images)]], i)
                served += len(list(requests.results()))
        except BaseException as exc:  # raised by results() at the failed request's place
            grpc_error = exc
        grpc_error_time = time.monotonic()
        loop.join(bound + 5)
        assert not loop.is_alive(), "the HTTP loop hung after the server was killed"
        assert len(errors) == 1 and isinstance(errors[0], ServingError), errors
        assert "no answer from the server" in str(errors[0]) and f"retries {retries}" in str(errors[0])
        assert done_after_kill[0] - kill_time < bound
        assert isinstance(grpc_error, ServingError) and "no answer from the server" in str(grpc_error)
        assert grpc_error_time - kill_time < bound
        with pytest.raises(ServingError):  # the next call fails the same way, no hang
            grpc(images[0])
        try:
            requests.close()
        except ServingError:
            pass

        # Retries outlast a restart on the same ports: the request issued while the server is down succeeds.
        result: List[object] = []
        waiter = threading.Thread(target=lambda: result.append(patient(images[1])))
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive()  # still retrying: nothing serves yet
        srv.stop()
        srv = Server(served_model, http_port=srv.http_port, grpc_port=srv.grpc_port)
        waiter.join(40)
        assert result and np.array_equal(result[0].labels, local[1].labels)  # type: ignore[attr-defined]
    finally:
        srv.stop()
