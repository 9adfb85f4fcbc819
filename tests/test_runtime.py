"""maskrcnn.runtime: glibc malloc keeps freed blocks for reuse; the CPU Predictor asks for it.

The setting cannot be undone inside a process, so the suite runs with
MASKRCNN_SYSTEM_MALLOC=1 (tests/conftest.py) and the setting itself is checked here in
subprocesses.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch

from maskrcnn import runtime
from maskrcnn.inference import predictor as predictor_module

APPLY_TWICE = (  # without torch, so that each subprocess starts in a fraction of a second
    "from maskrcnn import runtime; "
    "first = runtime.reuse_freed_memory(); second = runtime.reuse_freed_memory(); "
    "block = bytearray(80_000_000); block[-1] = 1; del block; print(first, second)"
)


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != runtime.SYSTEM_MALLOC_ENV}
    if env_value is not None:
        env[runtime.SYSTEM_MALLOC_ENV] = env_value
    result = subprocess.run([sys.executable, "-c", APPLY_TWICE], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_applies_on_glibc_and_is_idempotent_unless_switched_off():
    assert _run(None) == "True True"  # allocation and free still work after it
    assert _run("0") == "True True"
    assert _run("1") == "False False"


def test_the_suite_leaves_malloc_alone():
    """Every test sees glibc's own malloc, whichever ran before it (tests/conftest.py)."""
    assert os.environ.get(runtime.SYSTEM_MALLOC_ENV) == "1"
    assert runtime.reuse_freed_memory() is False and runtime._applied is False


def test_cpu_predictor_asks_for_it(monkeypatch):
    calls = []
    monkeypatch.setattr(predictor_module, "reuse_freed_memory", lambda: calls.append(1) or True)
    predictor_module.Predictor(torch.nn.Identity(), device="cpu")
    assert calls == [1]
