"""The one error shape of the service, ``{"error": {"code", "message", "limit"?}}``, for every layer that answers:
the FastAPI handlers, the ASGI guard (before the body is read) and the connection protocol (raw bytes)."""
from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse


class APIError(Exception):
    """An error answered as ``{"error": {"code", "message", "limit"}}`` with an HTTP status (and extra headers)."""

    def __init__(self, status: int, code: str, message: str, limit: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.limit = status, code, message, limit
        self.headers = headers or {}


def error_content(code: str, message: str, limit: str | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    body: dict[str, Any] = {"code": code, "message": message}
    if limit:
        body["limit"] = limit
    return {"error": body}


def error_bytes(code: str, message: str, limit: str | None = None) -> bytes:
    """The JSON body of an error, encoded (ASCII-escaped, so any message encodes)."""
    return json.dumps(error_content(code, message, limit), ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(error: APIError) -> JSONResponse:
    """The FastAPI response of an :class:`APIError`."""
    return JSONResponse(status_code=error.status, content=error_content(error.code, error.message, error.limit),
                        headers=error.headers or None)


def raw_http_error(error: APIError) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, for answers written straight to a socket."""
    body = error_bytes(error.code, error.message, error.limit)
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close",
               **error.headers}
    head = f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


async def send_error(send, error: APIError, close: bool = True) -> None:
    """Answer an ASGI request with ``error``; ``close``: ask the server to close the connection (the body was not
    read, so the connection cannot carry another request)."""
    body = error_bytes(error.code, error.message, error.limit)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
