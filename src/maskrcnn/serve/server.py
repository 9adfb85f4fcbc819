"""Run the app with uvicorn on a socket we bind ourselves (so port 0 works and the URL is known).

    with BackgroundServer(app) as server:   # 127.0.0.1, a free port, in a thread
        urllib.request.urlopen(server.url + "/health")
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

from maskrcnn.errors import UserError
from maskrcnn.serve.limits import MAX_CONNECTIONS


class ServeAddressError(UserError):
    """A --host/--port that cannot be bound."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    if not 0 <= port <= 65535:
        raise ServeAddressError(f"--port: expected 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeAddressError(f"--host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeAddressError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app: Any, *, log_level: str = "warning", access_log: bool = False) -> Any:
    import uvicorn

    # limit_concurrency: past MAX_CONNECTIONS open connections uvicorn itself answers 503; each
    # holds at most 64 KiB of an unread body (uvicorn's flow control), so their memory is bounded.
    config = uvicorn.Config(
        app, log_level=log_level, access_log=access_log, lifespan="off", limit_concurrency=MAX_CONNECTIONS
    )
    return uvicorn.Server(config)


class BackgroundServer:
    """uvicorn in a daemon thread on a loopback socket; stops on exit from the `with` block."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind_socket(host, port)
        self.url = socket_url(self.sock)
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 10.0
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10.0)
        self.sock.close()
