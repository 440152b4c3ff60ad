"""Settings of the HTTP service: model, limits, batching, key, timeouts and shutdown (env: ``POLYNER_SERVE_*``).

Every value is checked when the settings are made, so ``polyner serve`` refuses a bad one at start, in one
line naming it, instead of failing later under load.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyner.spec import ModelSpec

ENV_PREFIX = "POLYNER_SERVE_"
# older names still read where the POLYNER_SERVE_ one is absent (a key set the old way must never be dropped
# silently: the service would run open)
ENV_ALIASES = {"api_key": "POLYNER_API_KEY"}


@dataclass(frozen=True)
class ServeSettings:
    """Every knob of ``polyner serve``; each limit's name appears in the error that enforces it."""

    model: str | None = None  # None: the shipped default
    backend: str | None = None  # None: from the model directory; "torch", "onnx" or "onnx-int8" (see polyner.load)
    threads: int | None = None  # intra-op threads of the model's runtime; None: all cores
    max_length: int | None = None  # pieces per window; None: the model's own (ner_max_length)
    decoding: str = "viterbi"  # word labels: "viterbi" (IOB2-constrained) or "argmax"
    # what one request may ask (checked after the body is read and parsed: 413)
    max_texts_per_request: int = 64
    max_chars_per_text: int = 10_000
    max_chars_per_request: int = 100_000
    # the request body, checked before it is parsed: Content-Length, then the bytes as they arrive (413)
    max_body_bytes: int = 2_000_000  # room for max_chars_per_request of \uXXXX-escaped text
    body_timeout_s: float = 15.0  # the whole body must arrive within this (408)
    # connections (enforced by the server, see polyner.serve.server)
    header_timeout_s: float = 10.0  # a request's headers must arrive within this, else the connection closes
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this (uvicorn timeout_keep_alive)
    max_header_bytes: int = 16_384  # request line and headers (uvicorn h11_max_incomplete_event_size)
    max_connections: int = 256  # open connections; more are answered 503 at once and closed
    # batching and load shedding
    max_batch_size: int = 32  # texts per forward pass gathered across requests
    batch_wait_ms: float = 5.0  # how long the batcher waits for more texts
    max_queue_chars: int = 1_000_000  # characters queued or being tagged; beyond: 503 + Retry-After
    request_timeout_s: float = 30.0  # tagging must finish within this (504); admission keeps the wait below it
    api_key: str | None = None  # when set, X-API-Key must match
    graceful_shutdown_s: float = 10.0  # drain window after SIGTERM/SIGINT: requests in flight may finish

    def __post_init__(self) -> None:
        from polyner.models.backend import check_backend
        from polyner.spec import check_threads
        from polyner.tagging.tagger import TaggerConfig

        check_backend(self.backend)
        check_threads(self.threads)
        TaggerConfig(max_length=self.max_length, decoding=self.decoding)  # the tagger's own checks, now
        for name in ("max_texts_per_request", "max_chars_per_text", "max_chars_per_request", "max_body_bytes",
                     "max_header_bytes", "max_connections", "max_batch_size", "max_queue_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
        for name, positive in (("body_timeout_s", True), ("header_timeout_s", True), ("keep_alive_s", True),
                               ("request_timeout_s", True), ("batch_wait_ms", False), ("graceful_shutdown_s", False)):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not number or value < 0 or (positive and value == 0):
                raise ValueError(f"{name} must be a finite number {'more than' if positive else 'of at least'} 0, "
                                 f"not {value!r}")
        if self.max_chars_per_text > self.max_chars_per_request:
            raise ValueError(f"max_chars_per_text ({self.max_chars_per_text}) is more than max_chars_per_request "
                             f"({self.max_chars_per_request}): no request could carry such a text")
        if self.max_queue_chars < self.max_chars_per_request:
            raise ValueError(f"max_queue_chars ({self.max_queue_chars}) is less than max_chars_per_request "
                             f"({self.max_chars_per_request}): the largest request could never be admitted")
        if self.max_header_bytes < 1024:
            raise ValueError(f"max_header_bytes must be at least 1024, not {self.max_header_bytes}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty: give a non-empty key or none")

    def model_spec(self) -> "ModelSpec":
        """The model these settings serve, located and checked (errors name the path) with its tagger settings."""
        from polyner.spec import ModelSpec

        return ModelSpec.resolve(self.model, self.backend, self.threads, max_length=self.max_length,
                                 decoding=self.decoding)

    @classmethod
    def from_env(cls, **overrides) -> "ServeSettings":
        """Settings from ``POLYNER_SERVE_<FIELD>`` variables (the key also from ``POLYNER_API_KEY``), then keyword
        overrides (None: not given).

        A variable that does not parse is a ValueError naming it.
        """
        values, variables = {}, {}
        for f in fields(cls):
            variable = f"{ENV_PREFIX}{f.name.upper()}"
            if variable not in os.environ and f.name in ENV_ALIASES:
                variable = ENV_ALIASES[f.name]
            raw = os.environ.get(variable)
            if raw is None:
                continue
            variables[f.name] = variable
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
            try:
                values[f.name] = int(raw) if kind.startswith("int") else float(raw) if kind.startswith("float") else raw
            except ValueError:
                noun = "a whole number" if kind.startswith("int") else "a number"
                raise ValueError(f"{variable} must be {noun}, not {raw!r}") from None
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**{**values, **given})
        except ValueError as exc:  # name the variable a bad value came from
            source = next((n for n in values if n not in given and str(exc).startswith(n + " ")), None)
            if source is None:
                raise
            raise ValueError(f"{variables[source]}: {exc}") from None
