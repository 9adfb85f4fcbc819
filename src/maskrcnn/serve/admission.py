"""Admission to POST /predict: at most `max_queue` requests held at once.

A request past the bound is answered 503 with `Retry-After` at once, before its body is
read: the middleware never calls `receive`, so nothing of the body reaches the
application (uvicorn holds at most 64 KiB of it in the connection's buffer, then discards
the rest after the answer). Everything here runs on the event loop, so the counter needs
no lock.
"""

from __future__ import annotations

import json
import math
from typing import Any

PREDICT_PATH = "/predict"
MAX_RETRY_AFTER_SECONDS = 60


class RequestQueue:
    """Counts the POST /predict requests held now and how long the model takes."""

    def __init__(self, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue: expected 1 or more, got {max_queue}")
        self.max_queue = max_queue
        self.length = 0  # requests held: being read, decoded, waiting or at the model
        self.refused = 0  # answered 503 so far
        self.seconds_per_request = 1.0  # a moving average of the model's turn, for Retry-After

    def try_enter(self) -> bool:
        if self.length >= self.max_queue:
            self.refused += 1
            return False
        self.length += 1
        return True

    def leave(self) -> None:
        self.length -= 1

    def record_turn(self, seconds: float) -> None:
        self.seconds_per_request = 0.8 * self.seconds_per_request + 0.2 * seconds

    def retry_after_seconds(self) -> int:
        """About when one place frees up: the requests ahead times the model's recent turn."""
        wait = math.ceil(self.length * self.seconds_per_request)
        return min(max(wait, 1), MAX_RETRY_AFTER_SECONDS)


class AdmissionMiddleware:
    """Pure ASGI middleware: POST /predict goes through `queue`; every other request passes."""

    def __init__(self, app: Any, queue: RequestQueue, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.queue = queue
        self.headers = headers or {}  # added to the 503 (the security headers)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        if not self.queue.try_enter():
            await self._refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.queue.leave()

    async def _refuse(self, send: Any) -> None:
        retry_after = self.queue.retry_after_seconds()
        body = json.dumps({
            "error": f"the server is busy ({self.queue.max_queue} requests held, --max-queue); "
                     f"retry after {retry_after} s",
        }).encode()  # fmt: skip
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ] + [(name.lower().encode(), value.encode()) for name, value in self.headers.items()]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
