"""Run the app under uvicorn with the service's connection limits and its drain on SIGTERM/SIGINT.

uvicorn's own settings serve where they exist: ``timeout_keep_alive`` (idle keep-alive connections,
``keep_alive_s``), ``h11_max_incomplete_event_size`` (request line and headers, ``max_header_bytes``) and
``timeout_graceful_shutdown`` (the drain window plus a margin). Two things uvicorn lacks are added by
:class:`GuardedH11Protocol`, its h11 protocol with

* a header timeout: a connection whose request headers are not complete ``header_timeout_s`` after it opened
  (or after the first byte of a later request) is answered 408 and closed (uvicorn waits forever: slowloris);
* a connection cap that refuses at accept: beyond ``max_connections`` open connections a new one is answered
  503 with ``Retry-After`` and closed at once. (uvicorn's ``limit_concurrency`` accepts the connection, waits
  for a request on it however long that takes, and answers a plain-text 503.)

Errors written here use the service's JSON error shape too, as does the 400/431 for a malformed request or
oversized headers (uvicorn's is plain text). The body's size and arrival time are checked per request by
:class:`~polyner.serve.guard.RequestGuard`.
"""
from __future__ import annotations

import asyncio
import logging
from types import FrameType

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from polyner.serve.errors import APIError, raw_http_error
from polyner.serve.settings import ServeSettings

logger = logging.getLogger(__name__)
DRAIN_MARGIN_S = 1.0  # uvicorn cancels requests this long after the drain window, which answers them itself
LINGER_S = 1.0  # after a refusal, how long what the client still sends is read and dropped before closing


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection cap (``limits`` is set per server)."""

    limits: ServeSettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timer: asyncio.TimerHandle | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self._refuse(APIError(503, "too_many_connections", f"the server has max_connections="
                                  f"{self.limits.max_connections} connections open", "max_connections",
                                  headers={"Retry-After": "1"}))
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def _refuse(self, error: APIError) -> None:
        """Answer ``error`` and close, reading and dropping what the client still sends for a moment first:
        closing on unread data would reset the connection, and the client could lose the answer."""
        self.refused = True
        self.connections.discard(self)
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        self.transport.write(raw_http_error(error))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if not self.refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        super().data_received(data)
        if self._awaiting_headers():
            self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def send_400_response(self, msg: str) -> None:
        """A malformed request, or headers beyond ``max_header_bytes``: a JSON error, then close."""
        limit = self.limits.max_header_bytes
        if len(self.conn.trailing_data[0]) >= limit:
            self._refuse(APIError(431, "headers_too_large", f"the request line and headers exceed "
                                  f"max_header_bytes={limit}", "max_header_bytes"))
        else:
            self._refuse(APIError(400, "invalid_http", f"not a valid HTTP/1.1 request: {msg}"))

    def _awaiting_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _arm_header_timer(self) -> None:
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timeout(self) -> None:
        self.header_timer = None
        if self._awaiting_headers():
            timeout = self.limits.header_timeout_s
            self._refuse(APIError(408, "header_timeout", f"the request headers did not arrive within "
                                  f"header_timeout_s={timeout:g}", "header_timeout_s"))


class PolynerServer(uvicorn.Server):
    """uvicorn's server, which also starts the app's drain (``/ready`` 503 at once) when told to exit."""

    def __init__(self, config: uvicorn.Config, app) -> None:
        super().__init__(config)
        self.polyner_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        from polyner.serve.app import begin_shutdown

        begin_shutdown(self.polyner_app)
        super().handle_exit(sig, frame)


def build_server(app, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8080,
                 log_level: str = "info") -> PolynerServer:
    """A uvicorn server for ``app`` (made by :func:`~polyner.serve.app.create_app` with ``settings``)."""
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": settings})
    drain = settings.graceful_shutdown_s + DRAIN_MARGIN_S
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol, ws="none",
                            lifespan="on", timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
                            h11_max_incomplete_event_size=settings.max_header_bytes,
                            timeout_graceful_shutdown=drain)  # type: ignore[arg-type]
    return PolynerServer(config, app)
