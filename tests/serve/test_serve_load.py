"""serve under load and hostile clients: the bounded queue (503 + Retry-After before the body
is read), the read timeout (408), /health while the model is busy, client disconnects, and
the memory bound docs/serve.md states."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from serve_helpers import png_bytes, post_file, request, shapes_image

from maskrcnn.serve.app import ServeInfo, create_app
from maskrcnn.serve.limits import UploadLimits
from maskrcnn.serve.server import BackgroundServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serve.md"


class HeldPredictor:
    """The tiny Predictor behind a gate: a call signals `entered`, then waits for `release`."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.class_names = predictor.class_names
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, image):
        self.entered.set()
        assert self.release.wait(timeout=60), "the test never released the model"
        return self.predictor(image)

    def category_id(self, label: int) -> int:
        return self.predictor.category_id(label)

    def class_name(self, label: int) -> str:
        return self.predictor.class_name(label)


class ReceiveCounter:
    """ASGI wrapper: counts the `receive` calls of requests that carry an `x-probe` header."""

    def __init__(self, app) -> None:
        self.app = app
        self.probe_receives = 0
        self.probe_requests = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and any(name == b"x-probe" for name, _ in scope["headers"]):
            self.probe_requests += 1

            async def counted_receive():
                self.probe_receives += 1
                return await receive()

            return await self.app(scope, counted_receive, send)
        return await self.app(scope, receive, send)


def host_port(url: str) -> tuple[str, int]:
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    return host, int(port)


def raw_head(url: str, content_length: int, extra: str = "") -> socket.socket:
    """A connection that has sent the head of a POST /predict and none of its body."""
    sock = socket.create_connection(host_port(url), timeout=30)
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {content_length}\r\n{extra}\r\n")
    sock.sendall(head.encode())
    return sock


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, rest


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_full_queue_answers_503_with_retry_after_before_reading_the_body(tiny_predictor):
    held = HeldPredictor(tiny_predictor)
    app = create_app(held, ServeInfo(model="tiny.pt", device="cpu"), UploadLimits(max_queue=2))
    counted = ReceiveCounter(app)
    body = png_bytes(shapes_image(48, 64, seed=5))
    answers: dict[int, object] = {}

    def send(i: int) -> None:
        answers[i] = post_file(server.url + "/predict", f"held_{i}.png", body)

    with BackgroundServer(counted) as server:
        first = threading.Thread(target=send, args=(0,))
        first.start()
        assert held.entered.wait(timeout=30)  # the first is at the model, which does not return
        second = threading.Thread(target=send, args=(1,))
        second.start()
        wait_for(lambda: request(server.url + "/health").body["queue_length"] == 2)

        # The queue is full: a third request is refused at once, though it has sent no byte of
        # its declared 5 MB body, and nothing asked for that body.
        sock = raw_head(server.url, 5_000_000, "X-Probe: 1\r\n")
        start = time.monotonic()
        status, headers, rest = read_response_head(sock)
        waited = time.monotonic() - start
        sock.close()
        assert status == 503, (status, rest)
        assert int(headers["retry-after"]) >= 1
        assert "default-src 'self'" in headers["content-security-policy"]
        assert waited < 10.0  # in practice milliseconds; the model is still held
        assert counted.probe_requests == 1 and counted.probe_receives == 0

        health = request(server.url + "/health")  # answers while the model is busy
        assert health.status == 200
        assert health.body["queue_length"] == 2 and health.body["max_queue"] == 2
        assert health.body["refused_busy"] == 1
        assert not held.release.is_set()

        held.release.set()
        first.join(timeout=60)
        second.join(timeout=60)
        assert answers[0].status == 200 and answers[0].body["file_name"] == "held_0.png"
        assert answers[1].status == 200 and answers[1].body["file_name"] == "held_1.png"
        assert request(server.url + "/health").body["queue_length"] == 0
        assert post_file(server.url + "/predict", "after.png", body).status == 200  # room again


def test_a_trickling_client_gets_408_and_frees_its_place(tiny_predictor):
    app = create_app(tiny_predictor, ServeInfo(model="tiny.pt", device="cpu"),
                     UploadLimits(max_queue=1, read_timeout_seconds=1.0))
    with BackgroundServer(app) as server:
        sock = raw_head(server.url, 1000)
        start = time.monotonic()
        sock.settimeout(0.2)
        response = b""
        for _ in range(100):  # a byte every 0.2 s: the 1000 bytes would take 200 s
            try:
                sock.sendall(b"x")
                response += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # the server has closed the connection
                break
            if response:
                break
        elapsed = time.monotonic() - start
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):  # the rest of the answer, then the server closes
                response += chunk
        except ConnectionResetError:  # closed with our last unread byte: the answer had come
            pass
        sock.close()
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line.split()[1] == b"408", response
        assert b"connection: close" in rest.lower()
        assert b"did not arrive within 1 s" in rest
        assert 0.9 < elapsed < 15.0
        health = request(server.url + "/health").body
        assert health["queue_length"] == 0 and health["read_timeout_seconds"] == 1.0
        good = post_file(server.url + "/predict", "next.png", png_bytes(shapes_image(40, 40, seed=6)))
        assert good.status == 200  # the one place was given back


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_client_leaving_mid_body_leaves_no_traceback(tiny_predictor):
    app = create_app(tiny_predictor, ServeInfo(model="tiny.pt", device="cpu"), UploadLimits(max_queue=1))
    server = BackgroundServer(app)
    records = Records()
    logger = logging.getLogger("uvicorn.error")  # where uvicorn logs an application's exception
    logger.addHandler(records)
    try:
        with server:
            sock = raw_head(server.url, 100_000)
            sock.sendall(b"\x89PNG" + b"\0" * 5000)
            wait_for(lambda: request(server.url + "/health").body["queue_length"] == 1)
            sock.close()  # gone with 95 kB unsent
            wait_for(lambda: request(server.url + "/health").body["queue_length"] == 0)
            good = post_file(server.url + "/predict", "next.png", png_bytes(shapes_image(40, 40, seed=7)))
            assert good.status == 200
    finally:
        logger.removeHandler(records)
    problems = [r.getMessage() for r in records.records if r.levelno >= logging.WARNING or r.exc_info]
    assert problems == []


def mib(value: int) -> int:
    return round(value / 1024 / 1024)


def test_the_memory_bound_in_the_docs_is_the_one_the_limits_give(served):
    bound = UploadLimits().memory_bound()
    text = DOCS.read_text()
    # docs/serve.md states the default bound as "... = <held> MiB" / "<decoding> MiB" / "<total> MiB"
    stated = re.search(r"held requests: (\d+) MiB; decoding: (\d+) MiB; total: (\d+) MiB", text)
    assert stated, "docs/serve.md: the sentence stating the default memory bound is missing"
    assert [int(v) for v in stated.groups()] == [mib(bound.held_requests), mib(bound.decoding), mib(bound.total)]
    # The bound follows the options: queue x (body copies x upload + 3 bytes x pixels), + one decode.
    small = UploadLimits(max_bytes=1 << 20, max_pixels=1_000_000, max_queue=3).memory_bound()
    assert small.held_requests == 3 * (2 * (1 << 20) + 3 * 1_000_000)
    assert small.total == small.held_requests + small.decoding
    url, _ = served
    assert request(url + "/health").body["memory_bound_bytes"] == bound._asdict()


def test_bad_queue_and_timeout_options_are_one_error_line(tiny_serve_checkpoint, capsys):
    from maskrcnn.cli import main

    for option, words in (("--max-queue=0", "--max-queue: expected 1 or more, got 0"),
                          ("--read-timeout=0", "--read-timeout: expected a positive number of seconds, got 0.0")):
        assert main(["serve", "--weights", str(tiny_serve_checkpoint), option]) == 1
        assert capsys.readouterr().err.strip() == f"maskrcnn: error: {words}"


@pytest.mark.parametrize("max_queue", [1, 3])
def test_the_queue_never_holds_more_than_max_queue(tiny_predictor, max_queue):
    """Many clients at once against a held model: exactly max_queue are admitted, the rest 503."""
    held = HeldPredictor(tiny_predictor)
    app = create_app(held, ServeInfo(model="tiny.pt", device="cpu"), UploadLimits(max_queue=max_queue))
    body = png_bytes(shapes_image(40, 48, seed=8))
    statuses: list[int] = []

    def send(i: int) -> None:
        statuses.append(post_file(server.url + "/predict", f"q{i}.png", body).status)

    with BackgroundServer(app) as server:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(max_queue + 4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(statuses) == 4)  # the four past the bound come back while the model is held
        assert statuses == [503] * 4
        assert request(server.url + "/health").body["queue_length"] == max_queue
        held.release.set()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(statuses) == [200] * max_queue + [503] * 4


def test_a_waiting_request_whose_client_left_is_skipped_at_its_turn(tiny_predictor):
    held = HeldPredictor(tiny_predictor)
    app = create_app(held, ServeInfo(model="tiny.pt", device="cpu"), UploadLimits(max_queue=3))
    body = png_bytes(shapes_image(40, 48, seed=9))
    answers: list = []
    records = Records()
    with BackgroundServer(app) as server:
        logger = logging.getLogger("uvicorn.error")
        logger.addHandler(records)
        try:
            first = threading.Thread(target=lambda: answers.append(post_file(server.url + "/predict", "a.png", body)))
            first.start()
            assert held.entered.wait(timeout=30)
            sock = raw_head(server.url, len(body))  # the whole body, then gone while it waits
            sock.sendall(body)
            wait_for(lambda: request(server.url + "/health").body["queue_length"] == 2)
            sock.close()
            time.sleep(0.2)
            held.release.set()
            first.join(timeout=60)
            wait_for(lambda: request(server.url + "/health").body["queue_length"] == 0)
        finally:
            logger.removeHandler(records)
    assert answers[0].status == 200
    assert app.state.runner.calls == 1  # the model never ran for the client that had gone
    assert [r.getMessage() for r in records.records if r.levelno >= logging.WARNING or r.exc_info] == []
