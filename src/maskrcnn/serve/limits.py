"""The documented request limits of `maskrcnn serve` (docs/serve.md); options change them.

What the requests the server holds can take in memory follows from these limits alone
(`memory_bound`): at most `max_queue` requests are held at once, each with at most its body
and its decoded image; one image is decoded at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # request body, multipart framing included: 413 above
MAX_IMAGE_PIXELS = 40_000_000  # width * height, read from the header before decoding: 413 above
MAX_QUEUE = 4  # POST /predict requests held at once (being read, decoded, waiting or at the model): 503 above
READ_TIMEOUT_SECONDS = 30.0  # the whole body must arrive within this: 408 after
MAX_CONNECTIONS = 256  # open connections (uvicorn's limit_concurrency): 503 from uvicorn above

DECODED_BYTES_PER_PIXEL = 3  # the (H, W, 3) uint8 image that waits for the model
# Pillow's copies while one image is decoded (its own 4-byte RGBX pixels, the RGB conversion,
# the alpha composite of RGBA) before the 3-byte array is kept: peak measured at 17 bytes per
# pixel for an RGB PNG and 29 for an RGBA PNG (2000 x 2000, VmHWM); 32 leaves room.
DECODING_BYTES_PER_PIXEL = 32
# Each held request keeps its body; joining the chunks of a body copies it once.
BODY_COPIES = 2


class MemoryBound(NamedTuple):
    held_requests: int  # bytes: max_queue x (BODY_COPIES x max_bytes + 3 x max_pixels)
    decoding: int  # bytes: the one image being decoded, Pillow's copies
    total: int  # bytes: the two above; one model call's own working memory comes on top


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
    max_queue: int = MAX_QUEUE
    read_timeout_seconds: float = READ_TIMEOUT_SECONDS

    def memory_bound(self) -> MemoryBound:
        per_request = BODY_COPIES * self.max_bytes + DECODED_BYTES_PER_PIXEL * self.max_pixels
        held = self.max_queue * per_request
        decoding = DECODING_BYTES_PER_PIXEL * self.max_pixels
        return MemoryBound(held_requests=held, decoding=decoding, total=held + decoding)
