"""Generated requests (schemathesis, from the app's own OpenAPI description of /predict and
/health): no request it makes gets a 5xx. A short run; `SCHEMA_EXAMPLES=500` runs more.

Valid requests (positive) and requests that break the description (negative: wrong types,
missing body, out-of-range score_threshold) both go through the ASGI app in process.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from maskrcnn.serve.app import ServeInfo, create_app
from maskrcnn.serve.limits import UploadLimits

EXAMPLES = int(os.environ.get("SCHEMA_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def api_schema(tiny_predictor):
    # A small upload limit so that generated bodies also reach the 413 path.
    app = create_app(tiny_predictor, ServeInfo(model="tiny.pt", device="cpu"), UploadLimits(max_bytes=4096))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize(
    "path, method, mode",
    [("/predict", "POST", GenerationMode.POSITIVE), ("/predict", "POST", GenerationMode.NEGATIVE),
     ("/health", "GET", GenerationMode.POSITIVE)],
)
def test_no_generated_request_gets_a_server_error(api_schema, path, method, mode):
    strategy = api_schema[path][method].as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # the same requests each run: never flaky
    def no_server_error(case):
        case.call_and_validate(checks=[not_a_server_error])

    no_server_error()
