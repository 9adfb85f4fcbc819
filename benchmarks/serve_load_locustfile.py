"""The clients of benchmarks/serve_load.py, run by locust (headless) in its own process.

    SERVE_LOAD_PLAN=plan.json SERVE_LOAD_RECORDS=records.jsonl locust -f serve_load_locustfile.py ...

plan.json (written by serve_load.py) names the payload files and the expected answers; each
request becomes one JSON line in records.jsonl: {"user", "kind", "status", "ms", "t", ...}.

    UploadUser   posts images: good ones (raw or multipart, checked against the expected
                 answer; on 503 it waits Retry-After and sends again) and, for a share of
                 its requests, bad ones (truncated, wrong content type, not an image, over
                 the pixel limit, over the size limit, a client leaving half-way)
    HealthUser   one client polling GET /health
    TrickleUser  a client sending its body a byte a second (the server must answer 408)
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Any

from locust import FastHttpUser, User, constant, task

PLAN = json.loads(Path(os.environ["SERVE_LOAD_PLAN"]).read_text())
RECORDS = open(os.environ["SERVE_LOAD_RECORDS"], "a", buffering=1)  # noqa: SIM115 (open for the whole run)
GOOD = [dict(item, data=Path(item["path"]).read_bytes()) for item in PLAN["good"]]
BAD = [dict(item, data=Path(item["path"]).read_bytes()) for item in PLAN["bad"]]
MAX_RETRIES = 30
MAX_WAIT_S = 5.0


def record(**fields: Any) -> None:
    RECORDS.write(json.dumps(dict(fields, t=time.time())) + "\n")


def multipart(file_name: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = "maskrcnnloadboundary7d1"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def answer_differs(answer: dict[str, Any], expected: dict[str, Any], tolerance: dict[str, float]) -> str | None:
    """Why a 200 answer is not the Predictor's (None when it is)."""
    if (answer.get("width"), answer.get("height")) != (expected["width"], expected["height"]):
        return "image size"
    rows, want = answer.get("results", []), expected["results"]
    if len(rows) != len(want):
        return f"{len(rows)} detections, expected {len(want)}"
    for row, ref in zip(rows, want):
        if row["category_id"] != ref["category_id"]:
            return "category"
        if max(abs(a - b) for a, b in zip(row["bbox"], ref["bbox"])) > tolerance["box_px"]:
            return "box"
        if abs(row["score"] - ref["score"]) > tolerance["score"]:
            return "score"
        if row["segmentation"]["counts"] != ref["segmentation"]["counts"]:
            return "mask"
    return None


def raw_exchange(url: str, head: bytes, body_parts: list[bytes], pause_s: float, read: bool = True) -> int | None:
    """Send a request by hand (gevent makes the socket cooperative); the status, or None."""
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(head)
        sock.settimeout(pause_s if pause_s > 0 else 120)
        answer = b""
        for part in body_parts:
            try:
                sock.sendall(part)
                if pause_s > 0:
                    answer += sock.recv(65536)  # the server may answer before the body is complete
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        if not read:
            return None
        sock.settimeout(120)
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
    first = answer.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) > 1 else None


class UploadUser(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 300.0
    connection_timeout = 60.0

    def on_start(self) -> None:
        self.rng = random.Random(PLAN["seed"] * 1000 + id(self) % 1000)
        self.count = 0

    @task
    def post_one(self) -> None:
        self.count += 1
        if self.rng.random() < PLAN["bad_share"]:
            self.post_bad(self.rng.choice(BAD))
        else:
            self.post_good(self.rng.choice(GOOD))

    def post_good(self, item: dict[str, Any]) -> None:
        name = f"{item['name']}"
        as_form = self.rng.random() < 0.5
        if as_form:
            body, content_type = multipart(name, item["data"], item["content_type"])
            path = "/predict"
        else:
            body, content_type = item["data"], item["content_type"]
            path = "/predict?file_name=" + urllib.parse.quote(name)
        first_start = time.perf_counter()
        for attempt in range(MAX_RETRIES):
            start = time.perf_counter()
            with self.client.post(path, data=body, headers={"Content-Type": content_type},
                                  catch_response=True, name="predict good") as response:
                ms = (time.perf_counter() - start) * 1000
                status = response.status_code
                response.success()
                if status == 503:
                    record(kind="good", status=503, ms=ms, image=name, attempt=attempt)
                    retry_after = float(response.headers.get("Retry-After", "1"))
                    time.sleep(min(retry_after, MAX_WAIT_S))
                    continue
                wrong = None
                if status == 200:
                    try:
                        answer = json.loads(response.content)
                        wrong = answer_differs(answer, item["expected"], PLAN["tolerance"])
                        if answer.get("file_name") != name:
                            wrong = "file name"
                    except ValueError:
                        wrong = "not JSON"
                record(kind="good", status=status, ms=ms, image=name, attempt=attempt, wrong=wrong,
                       ms_with_retries=(time.perf_counter() - first_start) * 1000,
                       model_seconds=answer.get("model_seconds") if status == 200 and wrong != "not JSON" else None)
                return
        record(kind="good", status=None, ms=0.0, image=name, gave_up=True)

    def post_bad(self, item: dict[str, Any]) -> None:
        kind = item["kind"]
        start = time.perf_counter()
        if kind == "disconnect":  # half the body, then gone
            data = item["data"]
            head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode()
            raw_exchange(self.host, head, [data[: len(data) // 2]], 0, read=False)
            record(kind="bad:disconnect", status=None, ms=(time.perf_counter() - start) * 1000)
            return
        if kind == "oversize_body":  # declared over the limit; waits for the answer before sending (Expect)
            head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                    f"Content-Length: {item['declared_bytes']}\r\nExpect: 100-continue\r\n\r\n").encode()
            status = raw_exchange(self.host, head, [], 0)
            record(kind="bad:" + kind, status=status, ms=(time.perf_counter() - start) * 1000,
                   expected=item["expected_status"])
            return
        with self.client.post("/predict", data=item["data"], headers={"Content-Type": item["content_type"]},
                              catch_response=True, name="predict bad") as response:
            response.success()
            record(kind="bad:" + kind, status=response.status_code, ms=(time.perf_counter() - start) * 1000,
                   expected=item["expected_status"])


class HealthUser(FastHttpUser):
    fixed_count = 1
    wait_time = constant(PLAN["health_interval_s"])

    @task
    def health(self) -> None:
        start = time.perf_counter()
        with self.client.get("/health", catch_response=True, name="health") as response:
            ms = (time.perf_counter() - start) * 1000
            response.success()
            queue = None
            if response.status_code == 200:
                queue = json.loads(response.content).get("queue_length")
            record(kind="health", status=response.status_code, ms=ms, queue_length=queue)


class TrickleUser(User):
    fixed_count = PLAN["tricklers"]
    wait_time = constant(1.0)

    @task
    def trickle(self) -> None:
        start = time.perf_counter()
        head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 100000\r\n\r\n")
        status = raw_exchange(self.host, head, [b"\0"] * 100_000, 1.0)
        record(kind="trickle", status=status, ms=(time.perf_counter() - start) * 1000, expected=408)
