"""The OpenAPI description of POST /predict and GET /health (served at /openapi.json).

The route reads its request by hand (uploads.py: a multipart file or a raw image/* body, the
size limit counted as it arrives), so FastAPI cannot infer it; this says what it accepts and
answers, for clients and for the generated-request test (tests/serve/test_serve_schema.py).
"""

from __future__ import annotations

from typing import Any

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


BINARY = {"type": "string", "format": "binary"}

PREDICT = {
    "parameters": [
        {"name": "score_threshold", "in": "query", "required": False,
         "description": "keep detections scoring at least this (default 0: all the model gives)",
         "schema": {"type": "number", "minimum": 0, "maximum": 1}},
        {"name": "file_name", "in": "query", "required": False,
         "description": "the name a raw image/* body is answered under", "schema": {"type": "string"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": BINARY}, "required": ["file"]},
            },
            "image/png": {"schema": BINARY},
            "image/jpeg": {"schema": BINARY},
        },
    },
    "responses": {
        "200": {"description": "COCO results rows of the image (docs/serve.md)",
                "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": _error("not an image, truncated, empty, malformed multipart, a bad score_threshold"),
        "408": _error("the body did not arrive within --read-timeout"),
        "413": _error("body over --max-upload-mb, or image over --max-megapixels"),
        "415": _error("content type neither multipart/form-data nor image/*"),
        "503": _error("--max-queue requests already held: retry after the Retry-After header's seconds"),
    },
}  # fmt: skip
