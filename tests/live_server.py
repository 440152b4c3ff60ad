"""The real server (uvicorn with polyner's protocol and drain) on a loopback port, in a thread, for tests that
need sockets: connection limits, timeouts, shutdown, and the demo page in a browser."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from polyner.serve.app import create_app
from polyner.serve.server import PolynerServer, build_server
from polyner.serve.settings import ServeSettings


@contextmanager
def live_server(tagger, settings: ServeSettings) -> Iterator[tuple[PolynerServer, int]]:
    """Serve ``tagger`` on 127.0.0.1 (a free port); yields the server and its port, and stops it afterwards."""
    server = build_server(create_app(settings, tagger=tagger), settings, "127.0.0.1", 0, "warning")
    thread = threading.Thread(target=server.run, name="polyner-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        server.should_exit = True
        thread.join(20)
        assert not thread.is_alive(), "the server did not stop"


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    """A raw TCP connection to the server."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (fails the test after ``timeout`` s)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
