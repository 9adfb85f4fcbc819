"""Headless napari for the plugin's tests: Qt draws offscreen, OpenGL goes through Xvfb.

napari's canvas needs an OpenGL context even when no window is shown; Qt's `offscreen`
platform gets one through GLX when an X server is reachable. Without a DISPLAY, a private
Xvfb is started for the session (the Debian package `xvfb`; `make test` installs it as
root). Without Xvfb the tests skip on a developer machine and fail when CI is set, as the
tests that need ../shared do. The tests themselves skip when napari is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists


def _ci() -> bool:
    return os.environ.get("CI", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def virtual_display():
    """DISPLAY for the test run: the one given, else a private Xvfb's."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        message = "Xvfb not found: napari's canvas needs an X server for OpenGL (sudo apt-get install xvfb)"
        if _ci():
            pytest.fail(f"{message}; CI is set, so this is a failure, not a skip", pytrace=False)
        pytest.skip(message)
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_end_with_parent,  # noqa: PLW1509 - one prctl call between fork and exec
    )  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()  # Xvfb writes its display number once it accepts clients
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start (no display number)", pytrace=False)
    os.environ["DISPLAY"] = f":{number}"
    # Left running until this process ends (_end_with_parent): the QApplication keeps its X
    # connection to the end, and Xlib ends a process whose server goes away first.
    yield os.environ["DISPLAY"]


def _end_with_parent() -> None:
    """In the Xvfb child before exec: SIGTERM when the test process exits (Linux prctl)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@pytest.fixture
def napari_viewer(virtual_display, make_napari_viewer):
    """A napari Viewer (not shown) from napari's own fixture, cleaned up after the test."""
    return make_napari_viewer()
