"""Settings every test starts from, whether its file runs alone or in the whole suite.

* glibc malloc is left as it is (MASKRCNN_SYSTEM_MALLOC=1, inherited by subprocesses):
  `maskrcnn.runtime.reuse_freed_memory` cannot be undone within a process, so the first
  test that built a CPU Predictor or trained would otherwise change the memory behaviour
  of every test after it. `tests/test_runtime.py` checks the setting in subprocesses.
* torch's intra-op thread count is put back after every test (some set it to 1).
* hypothesis profiles: `ci` (the default: 25 examples a property, derandomized, so
  every run tries the same cases and a failure always reproduces; 10 s a case at most, a
  bound for a loaded machine, not a speed test) and `nightly` (1000 random examples a
  property, no deadline): `HYPOTHESIS_PROFILE=nightly python -m pytest tests -k property`.
* fixtures `require_shared` (a function: `require_shared(path)`) and `parity_dir`: data
  from ../shared beside the repo. Without it a test is skipped on a developer machine, but
  fails when the environment variable CI is set, so a CI run can never be green with
  every parity test skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from maskrcnn.runtime import SYSTEM_MALLOC_ENV

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

os.environ[SYSTEM_MALLOC_ENV] = "1"  # at import, before any test module builds a Predictor

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=10_000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("nightly", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def require_shared(path: Path, what: str = "parity fixtures") -> None:
    """Skip (locally) or fail (CI set) when `path` under ../shared is missing."""
    if path.exists():
        return
    message = f"{what} not found at {path} (the shared/ folder beside the repo)"
    if os.environ.get("CI", "") not in ("", "0", "false"):
        pytest.fail(f"{message}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


@pytest.fixture(name="require_shared", scope="session")
def require_shared_fixture():
    """The function require_shared, for test modules (they cannot import a conftest)."""
    return require_shared


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """../shared/parity (torchvision's recorded answers), or skip / fail as require_shared."""
    path = SHARED / "parity"
    require_shared(path)
    return path


@pytest.fixture(autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
