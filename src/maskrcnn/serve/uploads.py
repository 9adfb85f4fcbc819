"""From an HTTP request to an RGB image, with limits and clear 4xx errors.

Two ways to send an image to POST /predict:
  - multipart/form-data with one file field (any field name; `curl -F file=@img.png`);
  - the raw bytes as the body with an image/* content type
    (`curl --data-binary @img.png -H 'Content-Type: image/png'`).
Anything else is refused with a JSON error before the model sees it.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from maskrcnn.data.images import pil_to_rgb_array
from maskrcnn.errors import UserError
from maskrcnn.serve.limits import UploadLimits


class UploadError(UserError):
    """A request the server refuses; `status` is the HTTP status code (4xx) to answer with."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close  # answer with `Connection: close`: the rest of the body is not wanted


@dataclass(frozen=True)
class Upload:
    data: bytes  # the image file's bytes
    file_name: str


async def read_body(request: Request, max_bytes: int, timeout_seconds: float) -> bytes:
    """The whole body, refusing (413) as soon as it is known to pass `max_bytes`, and (408)
    when it has not all arrived within `timeout_seconds` (a client trickling it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise UploadError(413, f"upload of {int(declared)} bytes is over the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:  # a chunked body has no declared length: count as it arrives
                    raise UploadError(413, f"upload is over the limit of {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise UploadError(
            408, f"the request body did not arrive within {timeout_seconds:g} s ({size} bytes came)", close=True
        ) from None
    except ClientDisconnect:  # nobody is left to answer; no traceback in the log
        raise UploadError(400, f"the client disconnected after {size} bytes of the body", close=True) from None
    return b"".join(chunks)


async def _single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def extract_upload(request: Request, limits: UploadLimits) -> Upload:
    """The image bytes and a file name from a multipart form or a raw image body."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in ("multipart/form-data",) and not media_type.startswith("image/"):
        shown = media_type or "none"
        raise UploadError(
            415,
            f"content type {shown!r}: expected multipart/form-data with an image file, or an image/* body",
        )
    body = await read_body(request, limits.max_bytes, limits.read_timeout_seconds)
    if not body:
        raise UploadError(400, "empty body: send an image file")
    if media_type.startswith("image/"):
        name = request.query_params.get("file_name") or "image"
        return Upload(body, name)
    try:
        form = await MultiPartParser(request.headers, _single_chunk(body), max_files=1, max_fields=20).parse()
    except MultiPartException as exc:
        raise UploadError(400, f"malformed multipart body: {exc.message}") from None
    del body  # the file's bytes are read below: one copy of the upload at a time
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise UploadError(400, "multipart body has no file field: send the image as a file (curl -F file=@IMAGE)")
        data = await files[0].read()
        name = files[0].filename or "image"
    finally:
        await form.close()
    if not data:
        raise UploadError(400, f"{name}: empty file")
    return Upload(data, name)


def decode_image(upload: Upload, max_pixels: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB; 400 for bytes that are not an image, 413 past `max_pixels`."""
    # The pixel limit is checked from the header, before decoding. (No warnings filter here:
    # decoding runs in several threads and warnings filters are process-wide.)
    try:
        with Image.open(io.BytesIO(upload.data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(
                    413, f"{upload.file_name}: image of {width}x{height} pixels is over the limit of {max_pixels} pixels"
                )
            image.load()
            # Upright as every viewer (and the page's browser) shows it: phone JPEGs store
            # their rotation in EXIF. `maskrcnn predict` reads the stored pixels as they are.
            # In place: no copy of an image that needs no turning (limits.DECODING_BYTES_PER_PIXEL).
            ImageOps.exif_transpose(image, in_place=True)
            return pil_to_rgb_array(image)
    except UploadError:
        raise
    except Image.DecompressionBombError:  # only past PIL's own limit, with --max-megapixels above it
        raise UploadError(413, f"{upload.file_name}: image is too large to decode safely") from None
    except UnidentifiedImageError:
        raise UploadError(400, f"{upload.file_name}: not an image (no image format recognised in its bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UploadError(400, f"{upload.file_name}: not a readable image ({exc})") from None
