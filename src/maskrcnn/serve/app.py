"""The FastAPI application behind `maskrcnn serve`.

    GET  /          the page (static/index.html)
    GET  /static/*  its script and style sheet
    GET  /health    {"status": "ok", "model", "device", "class_names", "max_upload_bytes", ...}
    POST /predict   an image (multipart file or raw image/* body) -> results.py's JSON;
                    ?score_threshold=S keeps detections scoring >= S (default: all the model gives)

The model runs one call at a time (a lock): concurrent requests wait their turn in
FastAPI's thread pool, so none is lost and the model never runs twice at once. Reading
and decoding the upload and encoding masks happen outside the lock. Every refusal is a
4xx with {"error": "..."}; the server keeps serving.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from maskrcnn.serve.limits import UploadLimits
from maskrcnn.serve.results import prediction_payload
from maskrcnn.serve.uploads import UploadError, decode_image, extract_upload

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


def static_dir() -> Path:
    return Path(str(resources.files("maskrcnn.serve") / "static"))


class ModelRunner:
    """Runs the model one call at a time and counts the calls."""

    def __init__(self, predictor: ModelLike) -> None:
        self.predictor = predictor
        self._lock = threading.Lock()
        self.calls = 0

    def predict(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        with self._lock:
            start = time.perf_counter()
            result = self.predictor(image)
            self.calls += 1
            return result, time.perf_counter() - start


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


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
    # No /docs or /redoc: FastAPI's versions load scripts from a CDN.
    app = FastAPI(title="maskrcnn serve", docs_url=None, redoc_url=None)
    app.state.runner = runner

    @app.middleware("http")
    async def add_security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(UploadError)
    async def refused(_: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, str(exc))

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
            "max_upload_bytes": limits.max_bytes,
            "max_image_pixels": limits.max_pixels,
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        score_threshold = parse_score_threshold(request)
        upload = await extract_upload(request, limits)
        image = await run_in_threadpool(decode_image, upload, limits.max_pixels)  # (H, W, 3) uint8
        result, seconds = await run_in_threadpool(runner.predict, image)
        height, width = image.shape[:2]
        payload = await run_in_threadpool(
            prediction_payload, result, predictor,
            file_name=upload.file_name, width=width, height=height, score_threshold=score_threshold,
        )
        payload["model_seconds"] = round(seconds, 4)
        return payload

    return app
