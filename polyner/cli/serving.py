"""``polyner serve``: NER over HTTP (FastAPI + uvicorn)."""
from __future__ import annotations

from typing import Optional

import typer

from polyner.cli.common import (backend_option, decoding_option, max_length_option, model_option, needs,
                                setup_logging, threads_option)
from polyner.errors import UserError

app = typer.Typer()
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@app.command()
def serve(model: Optional[str] = model_option(),
          backend: Optional[str] = backend_option(),
          threads: Optional[int] = threads_option(),
          max_length: Optional[int] = max_length_option(),
          decoding: Optional[str] = decoding_option(None),
          host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8080),
          max_batch_size: Optional[int] = typer.Option(None, help="Texts per model call across requests."),
          batch_wait_ms: Optional[float] = typer.Option(None, help="How long to gather a batch."),
          max_texts_per_request: Optional[int] = typer.Option(None),
          max_chars_per_text: Optional[int] = typer.Option(None),
          max_chars_per_request: Optional[int] = typer.Option(None),
          max_body_bytes: Optional[int] = typer.Option(None, help="Request body cap, checked before parsing."),
          max_queue_chars: Optional[int] = typer.Option(None, help="Characters queued or tagged; more: 503."),
          request_timeout_s: Optional[float] = typer.Option(None),
          body_timeout_s: Optional[float] = typer.Option(None, help="The whole body must arrive within this."),
          header_timeout_s: Optional[float] = typer.Option(None, help="The headers must arrive within this."),
          keep_alive_s: Optional[float] = typer.Option(None, help="Idle keep-alive connections close after this."),
          max_header_bytes: Optional[int] = typer.Option(None, help="Request line and headers cap."),
          max_connections: Optional[int] = typer.Option(None, help="Open connections; more are refused (503)."),
          graceful_shutdown_s: Optional[float] = typer.Option(None, help="Drain window after SIGTERM/SIGINT."),
          api_key: Optional[str] = typer.Option(None, help="Require X-API-Key (env: POLYNER_SERVE_API_KEY or "
                                                "POLYNER_API_KEY)."),
          verbose: Optional[bool] = typer.Option(None, "--verbose/--quiet", "-v/-q",
                                                 help="Log level debug (verbose) or warning (quiet); "
                                                      "--log-level sets it exactly."),
          log_level: Optional[str] = typer.Option(None, help="critical, error, warning, info (default), debug "
                                                  "or trace.")) -> None:
    """Serve NER over HTTP (FastAPI + uvicorn): POST /v1/ner, GET /health, /ready, /v1/model, /docs, a demo at /.

    Every limit is also a POLYNER_SERVE_<NAME> environment variable (a flag wins); see docs/serving.md.
    """
    needs("serve", "serve")
    from polyner.serve.app import create_app
    from polyner.serve.server import build_server
    from polyner.serve.settings import ServeSettings

    if log_level is None:
        log_level = "info" if verbose is None else "debug" if verbose else "warning"
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, not {port}")
    if log_level.lower() not in LOG_LEVELS:
        raise UserError(f"unknown --log-level {log_level!r}: expected critical, error, warning, info, debug or trace")
    if verbose is not None:
        setup_logging(verbose)
    try:
        import socket

        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UserError(f"cannot use --host {host!r}: {exc}") from None
    settings = ServeSettings.from_env(
        model=model, backend=backend, threads=threads, max_length=max_length, decoding=decoding,
        max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
        max_texts_per_request=max_texts_per_request, max_chars_per_text=max_chars_per_text,
        max_chars_per_request=max_chars_per_request, max_body_bytes=max_body_bytes,
        max_queue_chars=max_queue_chars, request_timeout_s=request_timeout_s, body_timeout_s=body_timeout_s,
        header_timeout_s=header_timeout_s, keep_alive_s=keep_alive_s, max_header_bytes=max_header_bytes,
        max_connections=max_connections, graceful_shutdown_s=graceful_shutdown_s, api_key=api_key)
    spec = settings.model_spec()  # fails now, naming the path
    tagger = spec.build()  # a model that does not load: one line, not a server that never becomes ready
    server = build_server(create_app(settings, tagger=tagger), settings, host, port, log_level.lower())
    server.run()
    if not server.started:  # could not start (uvicorn logged why; it exits with 3 itself when it cannot bind)
        raise typer.Exit(3)
