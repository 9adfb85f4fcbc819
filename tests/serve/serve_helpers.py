"""Helpers for the serve tests (and benchmarks/serve.py, docs/serve_screenshot.py): generated
images, a small HTTP client on the standard library, and how chromium is found and launched."""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from PIL import Image, ImageDraw


def shapes_image(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: a textured background with a few filled ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(rng.integers(60, 120, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        x1, y1 = x0 + int(rng.integers(8, width // 3)), y0 + int(rng.integers(8, height // 3))
        fill = tuple(int(v) for v in rng.integers(150, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    return np.array(picture)  # writable, as read_image gives


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class Answer(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None) -> Answer:
    """One HTTP request; 4xx/5xx answers are returned, not raised. The body must be JSON."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return Answer(response.status, json.loads(response.read()), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read()), dict(error.headers))


def multipart(fields: dict[str, tuple[str, bytes, str] | str]) -> tuple[bytes, str]:
    """Encode form fields (name -> text, or (file name, bytes, content type)); returns (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            file_name, data, content_type = value
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n'
                    f"Content-Type: {content_type}\r\n\r\n")
            parts.append(head.encode() + data + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_file(url: str, file_name: str, data: bytes, content_type: str = "image/png") -> Answer:
    body, form_type = multipart({"file": (file_name, data, content_type)})
    return request(url, body, {"Content-Type": form_type})


# Debian's chromium, driven by Playwright's own driver (pip wheel); nothing is downloaded.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).is_file()), None
    )


def browser_missing(reason: str) -> None:
    """In CI (CI set) a missing browser is a failure; on a workstation the browser tests skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run; `make test` installs chromium)")
    pytest.skip(reason)
