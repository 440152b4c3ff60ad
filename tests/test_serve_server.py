"""The real server on a socket (uvicorn with polyner's protocol, in a thread): slow and idle clients are cut off,
connections are capped, the key is checked before a body is read, and SIGTERM drains (issue 23, cases 3, 4, 6).

Every refusal is one JSON error ``{"error": {...}}``, including those written by the connection protocol.
"""
from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from live_server import connect, live_server, read_until_closed
from polyner.serve.settings import ServeSettings

GERMAN = "Angela Merkel besuchte gestern Paris und traf dort Emmanuel Macron."


@pytest.fixture(autouse=True)
def _one_thread(_isolated_home):
    import torch

    torch.set_num_threads(1)


def _answer(raw: bytes) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _error(raw: bytes, status: int, code: str, limit: str | None = None) -> dict[str, str]:
    got, headers, body = _answer(raw)
    assert (got, body["error"]["code"]) == (status, code), raw
    assert body["error"]["message"] and body["error"].get("limit") == limit
    assert headers["content-type"] == "application/json"
    return headers


class SlowTagger:
    def __init__(self, tagger, delay: float) -> None:
        self.inner, self.delay = tagger, delay

    def __call__(self, texts):
        time.sleep(self.delay)
        return self.inner(texts)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_silent_connection_is_answered_408_and_closed_after_header_timeout_s(rule_tagger):
    with live_server(rule_tagger, ServeSettings(header_timeout_s=0.3)) as (_, port):
        started = time.monotonic()
        with connect(port) as sock:
            raw = read_until_closed(sock)
        assert 0.25 < time.monotonic() - started < 3
        _error(raw, 408, "header_timeout", "header_timeout_s")


def test_trickled_headers_are_cut_off(rule_tagger):
    """Slowloris: a header line every 0.1 s never completes the request; the connection is closed anyway."""
    with live_server(rule_tagger, ServeSettings(header_timeout_s=0.4)) as (_, port):
        started = time.monotonic()
        with connect(port) as sock:
            sock.sendall(b"POST /v1/ner HTTP/1.1\r\nHost: x\r\n")
            try:
                for i in range(50):
                    sock.sendall(f"X-Slow-{i}: y\r\n".encode())
                    time.sleep(0.1)
            except OSError:  # closed by the server while we were still sending
                pass
            raw = read_until_closed(sock)
        assert time.monotonic() - started < 3
        _error(raw, 408, "header_timeout", "header_timeout_s")


def test_a_trickled_body_is_a_408_and_the_next_client_is_served(rule_tagger):
    with live_server(rule_tagger, ServeSettings(body_timeout_s=0.4)) as (_, port):
        with connect(port) as sock:
            sock.sendall(b"POST /v1/ner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"texts\":")
            started = time.monotonic()
            raw = read_until_closed(sock)
        assert time.monotonic() - started < 3
        headers = _error(raw, 408, "body_timeout", "body_timeout_s")
        assert headers["connection"] == "close"
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/ner", json={"texts": [GERMAN]}, timeout=10)
        assert answer.status_code == 200 and answer.json()["results"][0]["entities"]


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_s(rule_tagger):
    with live_server(rule_tagger, ServeSettings(keep_alive_s=0.3)) as (_, port):
        with connect(port) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            raw = read_until_closed(sock)
        assert raw.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 3


def test_connections_beyond_max_connections_are_refused_at_once(rule_tagger):
    with live_server(rule_tagger, ServeSettings(max_connections=2, header_timeout_s=10)) as (_, port):
        first, second = connect(port), connect(port)
        time.sleep(0.2)  # both accepted
        with connect(port) as third:
            started = time.monotonic()
            raw = read_until_closed(third)
        assert time.monotonic() - started < 1  # not after the 10 s header timeout
        headers = _error(raw, 503, "too_many_connections", "max_connections")
        assert headers["retry-after"] == "1"
        first.close()
        second.close()
        time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def test_oversized_headers_are_a_json_431(rule_tagger):
    with live_server(rule_tagger, ServeSettings(max_header_bytes=2048)) as (_, port):
        for size in (8000, 300_000):  # headers that arrive whole, and ones the server buffers piece by piece
            with connect(port) as sock:
                try:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
                except OSError:  # closed by the server while we were still sending
                    pass
                raw = read_until_closed(sock)
            _error(raw, 431, "headers_too_large", "max_header_bytes")
        with connect(port) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            _error(read_until_closed(sock), 400, "invalid_http")


def test_the_key_is_checked_before_a_huge_body_is_sent(rule_tagger):
    """Headers announcing 50 MB without a key: 401 at once, the body never read, and /health unaffected."""
    with live_server(rule_tagger, ServeSettings(api_key="s3cret")) as (_, port):
        with connect(port) as sock:
            sock.sendall(b"POST /v1/ner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 50000000\r\n\r\n")
            started = time.monotonic()
            raw = read_until_closed(sock)
        assert time.monotonic() - started < 1
        _error(raw, 401, "unauthorized")
        with connect(port) as sock:  # with the key, the size is refused before any byte of the body
            sock.sendall(b"POST /v1/ner HTTP/1.1\r\nHost: x\r\nX-API-Key: s3cret\r\n"
                         b"Content-Length: 50000000\r\n\r\n")
            _error(read_until_closed(sock), 413, "body_too_large", "max_body_bytes")
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def _sigterm_mid_request(rule_tagger, seconds: float, drain_s: float):
    """Send SIGTERM (the server's exit handler) while a request that takes ``seconds`` is in flight; return the
    answers, whether the app was closing right after the signal, and how long the request went on after it."""
    slow = SlowTagger(rule_tagger, seconds)
    answers: list = []
    with live_server(slow, ServeSettings(graceful_shutdown_s=drain_s)) as (server, port):
        app = server.polyner_app
        client = threading.Thread(target=lambda: answers.append(
            httpx.post(f"http://127.0.0.1:{port}/v1/ner", json={"texts": [GERMAN]}, timeout=10)))
        client.start()
        deadline = time.monotonic() + 5
        while app.state.batcher.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        started = time.monotonic()
        server.handle_exit(signal.SIGTERM, None)
        closing = app.state.closing
        client.join(10)
        waited = time.monotonic() - started
        while server.started and not server.should_exit and time.monotonic() - started < 5:
            time.sleep(0.01)
    return answers, closing, waited


def test_sigterm_drains_requests_in_flight_and_stops(rule_tagger):
    """The server's exit handler (what SIGTERM runs) starts the drain: a request in flight is answered 200
    within ``graceful_shutdown_s``, and the server then stops on its own."""
    answers, closing, _ = _sigterm_mid_request(rule_tagger, 0.8, drain_s=5)
    assert closing  # /ready is 503 from this moment (test_serve checks the answers)
    assert answers and answers[0].status_code == 200 and answers[0].json()["results"][0]["entities"]


def test_a_request_longer_than_the_drain_window_gets_a_json_503(rule_tagger):
    """It was dropped with uvicorn's plain-text 500 when the window ran out."""
    answers, _, waited = _sigterm_mid_request(rule_tagger, 1.5, drain_s=0.3)
    assert answers and answers[0].status_code == 503, answers[0].text
    body = answers[0].json()
    assert body["error"]["code"] == "shutting_down" and body["error"]["limit"] == "graceful_shutdown_s"
    assert waited < 2.0
