"""The FastAPI app factory: the model is loaded in the lifespan and run by the micro-batcher."""
from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from polyner import __version__
from polyner.serve.batcher import MicroBatcher
from polyner.serve.schemas import ErrorResponse, ModelInfo, NERRequest, NERResponse, TextResult
from polyner.serve.settings import ServeSettings

logger = logging.getLogger(__name__)
ERRORS = {status: {"model": ErrorResponse} for status in (401, 413, 422, 500, 503, 504)}


class APIError(Exception):
    """An error answered as ``{"error": {"code", "message", "limit"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.limit = status, code, message, limit


def _error(status: int, code: str, message: str, limit: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if limit:
        body["limit"] = limit
    return JSONResponse(status_code=status, content={"error": body})


def model_info(tagger, settings: ServeSettings) -> ModelInfo:
    """Name, languages, labels, size and limits of the loaded model."""
    from polyner.languages import TARGET_LANGUAGES

    model = tagger.model
    parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
    model_file = getattr(model, "model_file", None)  # an ONNX model: its own folder (maybe an export of source)
    folder = Path(model_file).parent if model_file else Path(getattr(tagger, "source", "") or "")
    size = sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0
    languages = list(getattr(getattr(model, "config", None), "polyner_languages", None) or TARGET_LANGUAGES)
    limits = {k: float(getattr(settings, k)) for k in ("max_texts_per_request", "max_chars_per_text",
                                                        "max_chars_per_request", "max_batch_size", "batch_wait_ms",
                                                        "request_timeout_s")}
    from polyner.models.backend import backend_of

    return ModelInfo(name=tagger.name or "polyner", version=__version__, languages=languages,
                     labels=tagger.labels, parameters=parameters, size_bytes=size, backend=backend_of(model),
                     limits=limits)


def create_app(settings: ServeSettings | None = None, tagger=None) -> FastAPI:
    """Build the app. ``tagger`` may be given (tests); otherwise ``settings.model`` is loaded at start-up."""
    settings = settings or ServeSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        state.ready = False
        state.closing = False
        loaded = tagger
        if loaded is None:
            import polyner

            loaded = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(polyner.load, settings.model, backend=settings.backend))
        state.tagger = loaded
        state.batcher = MicroBatcher(tag_and_detect(loaded), settings.max_batch_size, settings.batch_wait_ms)
        state.batcher.start()
        state.info = model_info(loaded, settings)
        state.ready = True
        logger.info("polyner service ready (%s)", state.info.name)
        try:
            yield
        finally:
            state.ready = False
            state.closing = True
            await state.batcher.drain(settings.graceful_shutdown_s)

    app = FastAPI(title="polyner", version=__version__, lifespan=lifespan,
                  description="Multilingual named-entity recognition (PER, ORG, LOC) over HTTP.")

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.limit)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(422, "invalid_json", f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip())
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return _error(422, "invalid_request", message)

    def require_key(request: Request) -> None:
        if not settings.api_key:  # None or empty: no key required (the CLI refuses an empty key)
            return
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise APIError(401, "unauthorized", "missing or wrong X-API-Key header")

    @app.get("/health", summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded", responses={503: {"model": ErrorResponse}})
    async def ready(request: Request):
        if not getattr(request.app.state, "ready", False):
            return _error(503, "not_ready", "the model is not loaded yet")
        return {"status": "ready"}

    @app.get("/v1/model", response_model=ModelInfo, dependencies=[Depends(require_key)], responses=ERRORS)
    async def model(request: Request) -> ModelInfo:
        return request.app.state.info

    @app.post("/v1/ner", response_model=NERResponse, dependencies=[Depends(require_key)], responses=ERRORS,
              summary="Tag texts", description="Entities per text with character offsets into that text.")
    async def ner(body: NERRequest, request: Request) -> NERResponse:
        state = request.app.state
        if not getattr(state, "ready", False) or getattr(state, "closing", False):
            raise APIError(503, "not_ready", "the service is starting or shutting down")
        check_limits(body, settings)
        language = None
        if body.language is not None:
            from polyner.langid import check_language

            try:
                language = check_language(body.language)
            except ValueError as exc:
                raise APIError(422, "unknown_language", str(exc)) from exc
        try:
            entities = await asyncio.wait_for(state.batcher.submit(body.texts), settings.request_timeout_s)
        except asyncio.TimeoutError as exc:
            raise APIError(504, "timeout", f"tagging took longer than request_timeout_s={settings.request_timeout_s}",
                           "request_timeout_s") from exc
        except Exception as exc:
            logger.exception("tagging failed")
            raise APIError(500, "model_error", f"tagging failed: {type(exc).__name__}: {exc}") from exc
        wanted = set(body.labels) if body.labels is not None else None
        results = []
        for found, detected in entities:
            if wanted is not None:
                found = [e for e in found if e["label"] in wanted]
            results.append(TextResult(entities=found, language=language or detected))
        return NERResponse(model=state.info.name, results=results)

    return app


def tag_and_detect(tagger):
    """The batch function run on the model thread: entities and detected language per text."""
    from polyner.langid import detect_language

    def predict(texts: list[str]) -> list[tuple[list[dict], str | None]]:
        return list(zip(tagger(texts), (detect_language(t) for t in texts)))

    return predict


def check_limits(body: NERRequest, settings: ServeSettings) -> None:
    """Raise a 413 naming the first limit the request exceeds."""
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
