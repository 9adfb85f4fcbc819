"""`maskrcnn serve`: a real process on a free loopback port, Ctrl+C, and one-line errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
from serve_helpers import png_bytes, post_file, request, shapes_image

from maskrcnn.cli import main


def padded_png(size: int) -> bytes:
    """A valid PNG of exactly `size` bytes (bytes after its end chunk are ignored by readers)."""
    data = png_bytes(shapes_image(40, 50, seed=11))
    assert len(data) <= size
    return data + b"\0" * (size - len(data))


def test_serve_command_answers_and_stops_on_ctrl_c(tiny_serve_checkpoint):
    # The limits given as options must be the ones served (each reaches /health and acts).
    command = [sys.executable, "-m", "maskrcnn.cli", "serve", "--weights", str(tiny_serve_checkpoint),
               "--port", "0", "--threads", "1", "--max-upload-mb", "0.25", "--max-megapixels", "0.01",
               "--max-queue", "3", "--read-timeout", "7.5"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=60)
        match = re.search(r"open (http://127\.0\.0\.1:\d+)/", first_line[0] if first_line else "")
        assert match, (first_line, process.poll())
        url = match.group(1)
        health = request(url + "/health").body
        assert health["model"] == "tiny.pt"
        limit = 256 * 1024  # --max-upload-mb 0.25
        assert (health["max_upload_bytes"], health["max_upload_mb"]) == (limit, 0.25)
        assert (health["max_image_pixels"], health["max_queue"], health["read_timeout_seconds"]) == (10_000, 3, 7.5)
        answer = post_file(url + "/predict", "one.png", png_bytes(shapes_image(50, 70, seed=4)))
        assert answer.status == 200 and answer.body["width"] == 70 and len(answer.body["results"]) > 0
        # A body of exactly the limit is read; one byte more is refused.
        png = {"Content-Type": "image/png"}
        answer = request(url + "/predict?file_name=at_limit.png", padded_png(limit), png)
        assert answer.status == 200 and answer.body["file_name"] == "at_limit.png", answer.body
        answer = request(url + "/predict", padded_png(limit + 1), png)
        assert answer.status == 413, answer.body
        assert answer.body["error"] == f"upload of {limit + 1} bytes is over the limit of {limit} bytes"
        answer = request(url + "/predict", png_bytes(shapes_image(100, 101, seed=4)), png)  # 10100 pixels
        assert answer.status == 413 and "over the limit of 10000 pixels" in answer.body["error"]
        # A client that leaves half-way through its body: no traceback in the log (checked below).
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as leaving:
            leaving.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                            b"Content-Length: 5000\r\n\r\n" + b"\0" * 100)
        assert request(url + "/health").status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stdout.read()
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_main(args: list[str], capsys) -> tuple[int, str]:
    status = main(args)
    return status, capsys.readouterr().err


def test_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    status, err = run_main(["serve", "--weights", str(tmp_path / "missing.pt"), "--port", "0"], capsys)
    assert status == 1
    assert err.strip() == f"maskrcnn: error: {tmp_path / 'missing.pt'}: checkpoint file not found"


def test_bad_or_busy_port_is_one_error_line(tiny_serve_checkpoint, capsys):
    status, err = run_main(["serve", "--weights", str(tiny_serve_checkpoint), "--port", "70000"], capsys)
    assert status == 1 and err.strip() == "maskrcnn: error: --port: expected 0..65535, got 70000"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        status, err = run_main(["serve", "--weights", str(tiny_serve_checkpoint), "--port", str(port)], capsys)
    assert status == 1 and err.startswith(f"maskrcnn: error: cannot listen on 127.0.0.1:{port}: ")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("option, named", [
    ("--max-upload-mb=0", "maskrcnn: error: --max-upload-mb and --max-megapixels: expected positive numbers"),
    ("--threads=-1", "maskrcnn: error: --threads: expected 0 (PyTorch's default) or a positive number, got -1"),
])
def test_bad_limits_are_one_error_line(tiny_serve_checkpoint, capsys, option, named):
    status, err = run_main(["serve", "--weights", str(tiny_serve_checkpoint), option], capsys)
    assert status == 1 and err.startswith(named) and len(err.strip().splitlines()) == 1
