"""The settings tests/conftest.py gives every test: threads put back, ../shared required under CI."""

from __future__ import annotations

import pytest
import torch

THREADS_AT_IMPORT = torch.get_num_threads()


def test_a_test_may_change_torch_threads():
    torch.set_num_threads(1 if THREADS_AT_IMPORT != 1 else 2)


def test_the_next_test_gets_them_back():
    """Runs after the test above (pytest keeps file order): the autouse fixture restored them."""
    assert torch.get_num_threads() == THREADS_AT_IMPORT


def test_missing_shared_data_skips_locally_and_fails_under_ci(require_shared, tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found"):
        require_shared(tmp_path / "parity")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so this is a failure"):
        require_shared(tmp_path / "parity")
    require_shared(tmp_path)  # present: nothing happens
