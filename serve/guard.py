"""A pure ASGI middleware that refuses a request before any work is spent on it.

In order, before the application sees the request: the size of the headers, the API key (``/v1/*``), the
declared ``Content-Length`` against ``max_body_bytes``, readiness and load (``POST /v1/ner``: not ready,
shutting down or a full queue answer 503 without reading the body), then the body itself, read here with a
byte cap (for chunked or lying clients) and a deadline (``body_timeout_s``, against trickled bodies). Only then
is the body handed on, to be parsed. Each refusal is one JSON error and closes the connection, since the rest
of the body was never read.
"""
from __future__ import annotations

import asyncio
import hmac
from typing import Any, Awaitable, Callable

from polyner.serve.errors import APIError, send_error
from polyner.serve.settings import ServeSettings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
PROTECTED_PREFIX = "/v1/"
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class RequestGuard:
    """Key, readiness, load and body-size checks ahead of the app; ``admission(path)`` raises an
    :class:`APIError` when the service cannot take a request on that path now (503)."""

    def __init__(self, app, settings: ServeSettings, admission: Callable[[str], None]) -> None:
        self.app = app
        self.settings = settings
        self.admission = admission
        self.key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_headers(scope)
            self._check_key(scope)
            declared = self._declared_length(scope)
            if scope["method"] == "POST":
                self.admission(scope["path"])
            if declared == 0 or (declared is None and not _chunked(scope)):
                await self.app(scope, receive, send)
                return
            body, receive_rest = await self._read_body(receive)
        except APIError as error:
            await send_error(send, error)
            return
        except _Disconnected:
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive_rest()

        await self.app(scope, replay, send)

    def _check_headers(self, scope: Scope) -> None:
        """The server bounds headers it buffers while incomplete; ones that arrived whole are measured here."""
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
            len(name) + len(value) + 4 for name, value in scope["headers"])
        limit = self.settings.max_header_bytes
        if size > limit:
            raise APIError(431, "headers_too_large", f"the request line and headers exceed max_header_bytes={limit}",
                           "max_header_bytes")

    def _check_key(self, scope: Scope) -> None:
        if self.key is None or not scope["path"].startswith(PROTECTED_PREFIX):
            return
        given = next((value for name, value in scope["headers"] if name == b"x-api-key"), b"")
        if not hmac.compare_digest(given, self.key):
            raise APIError(401, "unauthorized", "missing or wrong X-API-Key header")

    def _declared_length(self, scope: Scope) -> int | None:
        values = [value for name, value in scope["headers"] if name == b"content-length"]
        if not values:
            return None
        raw = values[0].strip()
        if len(set(values)) > 1 or not raw.isdigit():
            raise APIError(400, "invalid_request", "the Content-Length header is not one whole number")
        length = int(raw)
        if length > self.settings.max_body_bytes:
            raise APIError(413, "body_too_large", f"the body has {length} bytes; the limit is "
                           f"max_body_bytes={self.settings.max_body_bytes}", "max_body_bytes")
        return length

    async def _read_body(self, receive: Receive) -> tuple[bytes, Receive]:
        """The whole body within ``body_timeout_s`` and ``max_body_bytes``."""
        limit, timeout = self.settings.max_body_bytes, self.settings.body_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise APIError(408, "body_timeout", f"the body did not arrive within body_timeout_s={timeout:g}",
                               "body_timeout_s") from None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise APIError(413, "body_too_large", f"the body has more than max_body_bytes={limit} bytes",
                               "max_body_bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), receive


class _Disconnected(Exception):
    """The client went away while sending the body: nothing to answer."""


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])
