"""The FastAPI application behind `maskrcnn serve`.

    GET  /          the page (static/index.html)
    GET  /static/*  its script and style sheet
    GET  /health    {"status": "ok", "model", "device", "class_names", "queue_length", "max_queue", ...}
    POST /predict   an image (multipart file or raw image/* body) -> results.py's JSON;
                    ?score_threshold=S keeps detections scoring >= S (default: all the model gives)

At most `max_queue` POST /predict requests are held at once (admission.py); past that, 503
with Retry-After before the body is read. A held request reads its body (408 past the read
timeout), has its image decoded (one decode at a time), then waits its turn at the model
(one call at a time, first come first served); its answer is encoded in the same turn, so
one set of full-size masks exists at a time. Decoding, the model and the encoding run in
worker threads: the event loop stays free, and /health answers at once while the model
works. Every refusal is a 4xx (or the 503) with {"error": "..."}; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from maskrcnn.serve import api_description
from maskrcnn.serve.admission import AdmissionMiddleware, RequestQueue
from maskrcnn.serve.limits import MAX_CONNECTIONS, UploadLimits
from maskrcnn.serve.results import prediction_payload
from maskrcnn.serve.uploads import Upload, UploadError, decode_image, extract_upload

# The page loads nothing from elsewhere; the browser is told to refuse it if it tried.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}


class ModelLike(Protocol):
    """What the server needs from a `maskrcnn.inference.predictor.Predictor`."""

    class_names: list[str] | None

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]: ...
    def category_id(self, label: int) -> int: ...
    def class_name(self, label: int) -> str: ...


@dataclass(frozen=True)
class ServeInfo:
    model: str  # what /health and the page call the model (the checkpoint's file name)
    device: str


class SecurityHeadersMiddleware:
    """Pure ASGI: adds SECURITY_HEADERS to every answer. (Not Starlette's BaseHTTPMiddleware,
    whose wrapped `receive` hides a client's disconnect from `Request.is_disconnected`.)"""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in self.headers}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = dict(message, headers=kept + self.headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def static_dir() -> Path:
    return Path(str(resources.files("maskrcnn.serve") / "static"))


class ModelRunner:
    """Runs the model one call at a time, in arrival order, and counts the calls; decodes
    one image at a time. The turns are asyncio locks (FIFO, held on the event loop); the
    work itself runs in a worker thread."""

    def __init__(self, predictor: ModelLike) -> None:
        self.predictor = predictor
        self._lock = threading.Lock()  # the model never runs twice at once, whoever calls
        self.model_turn = asyncio.Lock()  # the route holds it around predict_and_encode
        self._decode_turn = asyncio.Lock()
        self.calls = 0

    def predict(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        with self._lock:
            start = time.perf_counter()
            result = self.predictor(image)
            self.calls += 1
            return result, time.perf_counter() - start

    async def decode(self, upload: Upload, max_pixels: int) -> np.ndarray:
        async with self._decode_turn:
            return await run_in_threadpool(decode_image, upload, max_pixels)  # (H, W, 3) uint8

    def predict_and_encode(self, image: np.ndarray, file_name: str, score_threshold: float) -> tuple[bytes, float]:
        """The JSON answer's bytes and the seconds of the model call alone (in a worker thread)."""
        result, seconds = self.predict(image)
        height, width = image.shape[:2]
        payload = prediction_payload(
            result, self.predictor, file_name=file_name, width=width, height=height, score_threshold=score_threshold
        )
        payload["model_seconds"] = round(seconds, 4)
        return json_bytes(payload), seconds


def json_bytes(payload: Any) -> bytes:
    """As JSONResponse writes it, but in the worker thread, off the event loop."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def error_response(status: int, message: str, *, close: bool = False) -> JSONResponse:
    headers = {"Connection": "close"} if close else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def parse_score_threshold(request: Request) -> float:
    text = request.query_params.get("score_threshold")
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise UploadError(400, f"score_threshold: expected a number from 0 to 1, got {text!r}")
    return value


def create_app(predictor: ModelLike, info: ServeInfo, limits: UploadLimits | None = None) -> FastAPI:
    limits = limits or UploadLimits()
    runner = ModelRunner(predictor)
    queue = RequestQueue(limits.max_queue)
    # No /docs or /redoc: FastAPI's versions load scripts from a CDN.
    app = FastAPI(title="maskrcnn serve", docs_url=None, redoc_url=None)
    app.state.runner = runner
    app.state.queue = queue
    app.state.limits = limits

    app.add_middleware(SecurityHeadersMiddleware)
    # Added last, so outermost: a request past the bound is answered before anything else
    # touches it (it adds the security headers itself).
    app.add_middleware(AdmissionMiddleware, queue=queue, headers=SECURITY_HEADERS)

    @app.exception_handler(UploadError)
    async def refused(_: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, str(exc), close=exc.close)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, f"invalid request: {exc.errors()}")

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:  # a bug or the model failing (e.g. out of memory)
        return error_response(500, f"the server failed: {type(exc).__name__}: {exc}")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": info.model,
            "device": info.device,
            "class_names": list(predictor.class_names) if predictor.class_names is not None else None,
            "model_calls": runner.calls,
            "queue_length": queue.length,
            "max_queue": limits.max_queue,
            "refused_busy": queue.refused,
            "max_upload_bytes": limits.max_bytes,
            "max_upload_mb": limits.max_bytes / 1024 / 1024,
            "max_image_pixels": limits.max_pixels,
            "read_timeout_seconds": limits.read_timeout_seconds,
            "max_connections": MAX_CONNECTIONS,
            "memory_bound_bytes": limits.memory_bound()._asdict(),
        }

    @app.post("/predict", openapi_extra=api_description.PREDICT)
    async def predict(request: Request) -> Response:
        score_threshold = parse_score_threshold(request)
        upload = await extract_upload(request, limits)
        file_name = upload.file_name
        image = await runner.decode(upload, limits.max_pixels)  # (H, W, 3) uint8
        del upload  # the body is not kept while the image waits for the model
        async with runner.model_turn:
            if await request.is_disconnected():  # the client has gone: its turn goes to the next
                return error_response(400, "the client disconnected before its turn at the model", close=True)
            body, seconds = await run_in_threadpool(runner.predict_and_encode, image, file_name, score_threshold)
        queue.record_turn(seconds)
        return Response(body, media_type="application/json")

    return app
