"""The FastAPI app factory: the model is loaded in the lifespan and run by the micro-batcher.

Requests pass :class:`~polyner.serve.guard.RequestGuard` first (key, readiness, load, body size and time),
so a refused request costs no parsing. Every error, the framework's own 404/405/422 and unexpected 500s
included, has the one shape ``{"error": {"code", "message", "limit"?}}``. Shutdown starts with
:func:`begin_shutdown` (called by the server on SIGTERM/SIGINT, or by the lifespan's exit): ``/ready``
answers 503 at once, new texts are refused, and requests in flight have ``graceful_shutdown_s`` to finish.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyner import __version__
from polyner.serve.batcher import MicroBatcher, Overloaded
from polyner.serve.demo import DemoPage
from polyner.serve.errors import APIError, error_response
from polyner.serve.guard import RequestGuard
from polyner.serve.schemas import ErrorResponse, ModelInfo, NERRequest, NERResponse, TextResult
from polyner.serve.settings import ServeSettings
from polyner.textcheck import lone_surrogate

if TYPE_CHECKING:
    from polyner.spec import ModelSpec

logger = logging.getLogger(__name__)
ERRORS = {status: {"model": ErrorResponse} for status in (401, 408, 413, 422, 500, 503, 504)}
ADMIT_FRACTION = 0.5  # a request is admitted while the queue ahead of it takes at most this share of the timeout
STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
LIMITS = ("max_texts_per_request", "max_chars_per_text", "max_chars_per_request", "max_body_bytes", "max_batch_size",
          "batch_wait_ms", "max_queue_chars", "request_timeout_s", "body_timeout_s", "header_timeout_s",
          "keep_alive_s", "max_header_bytes", "max_connections", "graceful_shutdown_s")


def model_info(tagger, settings: ServeSettings) -> ModelInfo:
    """Name, languages, labels, size and limits of the loaded model, read from its
    :class:`~polyner.models.classifier.TokenClassifier`."""
    from polyner.languages import TARGET_LANGUAGES

    classifier = tagger.classifier
    folder = classifier.folder or Path(tagger.source or "")  # an ONNX model: its own folder (maybe an export)
    size = sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0
    languages = list(getattr(classifier.config, "polyner_languages", None) or TARGET_LANGUAGES)
    limits = {k: float(getattr(settings, k)) for k in LIMITS}
    return ModelInfo(name=tagger.name or "polyner", version=__version__, languages=languages,
                     labels=tagger.labels, parameters=classifier.parameters_count(), size_bytes=size,
                     backend=classifier.backend, limits=limits)


def begin_shutdown(app: FastAPI) -> None:
    """Start the drain: not ready from now on; requests in flight get ``graceful_shutdown_s`` to finish.

    Safe to call from a signal handler and more than once.
    """
    state = app.state
    if state.closing:
        return
    state.closing = True
    loop = getattr(state, "loop", None)
    if loop is not None and not loop.is_closed():
        window = state.settings.graceful_shutdown_s
        loop.call_soon_threadsafe(lambda: loop.call_later(window, state.drain_expired.set))
    logger.info("shutting down: draining requests for up to %g s", state.settings.graceful_shutdown_s)


def create_app(settings: ServeSettings | None = None, tagger=None, spec: ModelSpec | None = None) -> FastAPI:
    """Build the app. ``tagger`` may be given (a loaded one, or a stand-in in tests); otherwise the model of ``spec``
    (default: ``settings.model`` run by ``settings.backend``) is loaded at start-up."""
    settings = settings or ServeSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        state.loop = asyncio.get_running_loop()
        state.drain_expired = asyncio.Event()
        state.closing = False
        loaded = tagger
        if loaded is None:
            def build():  # a hub model may be downloaded: off the event loop
                return (spec or settings.model_spec()).build()

            loaded = await state.loop.run_in_executor(None, build)
        state.tagger = loaded
        state.batcher = MicroBatcher(tag_and_detect(loaded), settings.max_batch_size, settings.batch_wait_ms,
                                     settings.max_queue_chars, settings.request_timeout_s * ADMIT_FRACTION,
                                     unmeasured_chars=settings.max_chars_per_request)
        state.batcher.start()
        state.info = model_info(loaded, settings)
        state.ready = True
        logger.info("polyner service ready (%s)", state.info.name)
        try:
            yield
        finally:
            begin_shutdown(app)
            state.ready = False
            await state.batcher.drain(settings.graceful_shutdown_s)

    app = FastAPI(title="polyner", version=__version__, lifespan=lifespan,
                  description="Multilingual named-entity recognition (PER, ORG, LOC) over HTTP. "
                              "A demo page is at /.")
    app.state.settings = settings
    app.state.ready = False
    app.state.closing = False

    def refuse_unless_serving(path: str) -> None:
        """503 when the service cannot take texts now: before the body is read (guard) and after (route)."""
        if path != "/v1/ner":
            return
        state = app.state
        if state.closing:
            raise APIError(503, "shutting_down", "the service is shutting down", headers={"Retry-After": "1"})
        if not state.ready:
            raise APIError(503, "not_ready", "the model is not loaded yet", headers={"Retry-After": "1"})
        try:
            state.batcher.check_room()
        except Overloaded as exc:
            raise overloaded(exc) from exc

    app.add_middleware(RequestGuard, settings=settings, admission=refuse_unless_serving)

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "http_error")
        message = {404: "no such endpoint", 405: "method not allowed here"}.get(exc.status_code, str(exc.detail))
        if exc.status_code == 400 and exc.__cause__ is not None:  # the body could not be parsed
            return error_response(unparsable_body(exc.__cause__))
        return error_response(APIError(exc.status_code, code, message, headers=dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if tuple(first.get("loc", ())) == ("body",):  # no object at all: empty, not JSON-typed, or not an object
            content_type = request.headers.get("content-type", "")
            media = content_type.split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):  # e.g. curl -d: form-encoded
                sent = f"Content-Type {content_type!r} was sent" if content_type else "no Content-Type was sent"
                why = f"send it with Content-Type application/json ({sent})"
            else:
                why = first.get("msg", "invalid request").lower()
            return error_response(APIError(422, "invalid_request",
                                           f'the body must be a JSON object such as {{"texts": ["..."]}}: {why}'))
        if first.get("type") == "json_invalid":
            detail = first.get("ctx", {}).get("error", "")
            return error_response(APIError(422, "invalid_json", f"the body is not valid JSON: {detail}".strip()))
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return error_response(APIError(422, "invalid_request", message))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error", exc_info=exc)
        return error_response(APIError(500, "internal_error", f"internal error ({type(exc).__name__})"))

    demo = DemoPage.load()

    @app.get("/", include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(demo.html, headers=demo.headers)

    @app.get("/health", summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded and the service takes requests",
             responses={503: {"model": ErrorResponse}})
    async def ready(request: Request):
        state = request.app.state
        if state.closing:
            return error_response(APIError(503, "shutting_down", "the service is shutting down",
                                           headers={"Retry-After": "1"}))
        if not state.ready:
            return error_response(APIError(503, "not_ready", "the model is not loaded yet",
                                           headers={"Retry-After": "1"}))
        return {"status": "ready"}

    @app.get("/v1/model", response_model=ModelInfo, responses=ERRORS)
    async def model(request: Request) -> ModelInfo:
        if not request.app.state.ready:
            raise APIError(503, "not_ready", "the model is not loaded yet", headers={"Retry-After": "1"})
        return request.app.state.info

    @app.post("/v1/ner", response_model=NERResponse, responses=ERRORS,
              summary="Tag texts", description="Entities per text with character offsets into that text.")
    async def ner(body: NERRequest, request: Request) -> NERResponse:
        state = request.app.state
        refuse_unless_serving("/v1/ner")
        check_limits(body, settings)
        language = None
        if body.language is not None:
            from polyner.langid import check_language

            try:
                language = check_language(body.language)
            except ValueError as exc:
                raise APIError(422, "unknown_language", str(exc)) from exc
        entities = await tag_within_limits(state, body.texts, settings)
        wanted = set(body.labels) if body.labels is not None else None
        results = []
        for found, detected in entities:
            if wanted is not None:
                found = [e for e in found if e["label"] in wanted]
            results.append(TextResult(entities=found, language=language or detected))
        return NERResponse(model=state.info.name, results=results)

    return app


async def tag_within_limits(state, texts: list[str], settings: ServeSettings) -> list:
    """The batcher's answer for ``texts``, or the error that stopped it: 503 when the queue is full or the
    drain window ended, 504 after ``request_timeout_s``, 500 when the model failed."""
    try:
        tagging = state.batcher.enqueue(texts)  # admitted and queued at once: no other request slips in between
    except Overloaded as exc:
        raise overloaded(exc) from exc
    drained = asyncio.ensure_future(state.drain_expired.wait())
    try:
        done, _ = await asyncio.wait({tagging, drained}, timeout=settings.request_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        drained.cancel()
    if tagging not in done:
        tagging.cancel()
        if drained in done:
            raise APIError(503, "shutting_down", "the service shut down before tagging finished "
                           f"(graceful_shutdown_s={settings.graceful_shutdown_s:g})", "graceful_shutdown_s",
                           headers={"Retry-After": "1"})
        raise APIError(504, "timeout", f"tagging took longer than request_timeout_s={settings.request_timeout_s}",
                       "request_timeout_s")
    try:
        return list(tagging.result())
    except Exception as exc:
        logger.exception("tagging failed")
        raise APIError(500, "model_error", f"tagging failed: {type(exc).__name__}: {exc}") from exc


def overloaded(exc: Overloaded) -> APIError:
    """The 503 of a request refused for load, telling the client when to come back."""
    return APIError(503, "overloaded", f"too busy: {exc}; retry after {exc.retry_after} s", "max_queue_chars",
                    headers={"Retry-After": str(exc.retry_after)})


def unparsable_body(cause: BaseException) -> APIError:
    """The 422 of a body FastAPI could not parse: not UTF-8, nested too deeply, ..."""
    if isinstance(cause, UnicodeDecodeError):
        return APIError(422, "invalid_json", f"the body is not UTF-8: {cause.reason} at byte {cause.start}")
    if isinstance(cause, RecursionError):
        return APIError(422, "invalid_json", "the body's JSON is nested too deeply")
    return APIError(422, "invalid_json", f"the body could not be parsed ({type(cause).__name__})")


def tag_and_detect(tagger):
    """The batch function run on the model thread: entities and detected language per text."""
    from polyner.langid import detect_language

    def predict(texts: list[str]) -> list[tuple[list[dict], str | None]]:
        return list(zip(tagger(texts), (detect_language(t) for t in texts)))

    return predict


def check_limits(body: NERRequest, settings: ServeSettings) -> None:
    """Raise a 413 naming the first limit the request exceeds, or a 422 for a text that is not valid Unicode."""
    if len(body.texts) > settings.max_texts_per_request:
        raise APIError(413, "too_many_texts", f"{len(body.texts)} texts; the limit is "
                       f"max_texts_per_request={settings.max_texts_per_request}", "max_texts_per_request")
    for i, text in enumerate(body.texts):
        if len(text) > settings.max_chars_per_text:
            raise APIError(413, "text_too_long", f"texts[{i}] has {len(text)} characters; the limit is "
                           f"max_chars_per_text={settings.max_chars_per_text}", "max_chars_per_text")
    total = sum(len(t) for t in body.texts)
    if total > settings.max_chars_per_request:
        raise APIError(413, "request_too_large", f"{total} characters in all; the limit is "
                       f"max_chars_per_request={settings.max_chars_per_request}", "max_chars_per_request")
    for i, text in enumerate(body.texts):
        problem = lone_surrogate(text)
        if problem:
            raise APIError(422, "invalid_text", f"texts[{i}] holds {problem}: not valid Unicode")
