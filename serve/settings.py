"""Settings of the HTTP service: model, limits, batching, key and timeouts (env: ``POLYNER_SERVE_*``)."""
from __future__ import annotations

from dataclasses import dataclass, fields
import os


@dataclass
class ServeSettings:
    """Every knob of ``polyner serve``; each limit's name appears in the error that enforces it."""

    model: str | None = None  # None: the shipped default
    backend: str | None = None  # None: from the model directory; "torch", "onnx" or "onnx-int8" (see polyner.load)
    max_texts_per_request: int = 64
    max_chars_per_text: int = 10_000
    max_chars_per_request: int = 100_000
    max_batch_size: int = 32  # texts per forward pass gathered across requests
    batch_wait_ms: float = 5.0  # how long the batcher waits for more texts
    request_timeout_s: float = 30.0
    api_key: str | None = None  # when set, X-API-Key must match
    graceful_shutdown_s: float = 10.0

    @classmethod
    def from_env(cls, **overrides) -> "ServeSettings":
        """Settings from ``POLYNER_SERVE_<FIELD>`` variables, then keyword overrides."""
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"POLYNER_SERVE_{f.name.upper()}")
            if raw is None:
                continue
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
            values[f.name] = int(raw) if kind.startswith("int") else float(raw) if kind.startswith("float") else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
