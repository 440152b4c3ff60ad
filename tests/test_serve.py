"""The HTTP service (``polyner.serve``): every status code, the response schema, the micro-batcher,
start-up / shutdown behaviour, OpenAPI and the ``polyner serve`` command.

Answers are deterministic: the app gets the ``rule_tagger`` fixture (capitalised word runs -> PER).
Life-cycle tests drive the real lifespan by hand on one event loop (httpx.ASGITransport), so the
"model still loading" and "shutting down" states are reached for certain, without sleeps guessing at timing.
"""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from polyner.serve.app import create_app
from polyner.serve.batcher import MicroBatcher
from polyner.serve.errors import APIError
from polyner.serve.settings import ServeSettings

GERMAN = "Angela Merkel besuchte gestern Paris und traf dort Emmanuel Macron, die beiden sprachen sehr lange miteinander."
RUSSIAN = "Владимир Путин прилетел вчера в Москву и встретился там с делегацией из другой страны."
ENTITY_KEYS = {"text", "label", "start", "end", "score"}


@pytest.fixture(autouse=True)
def _one_thread(_isolated_home):
    """conftest sets 2 torch threads; this file stays on one (a training job shares the machine)."""
    import torch

    torch.set_num_threads(1)


class SlowTagger:
    """Wraps a tagger; every call sleeps ``delay`` seconds first and is counted."""

    def __init__(self, tagger, delay: float) -> None:
        self.inner, self.delay, self.calls, self.finished = tagger, delay, 0, 0

    def __call__(self, texts):
        self.calls += 1
        time.sleep(self.delay)
        self.finished += 1
        return self.inner(texts)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class RelabelTagger:
    """Wraps a tagger; entities whose text is in ``as_loc`` become LOC, so a filter has two types to choose from."""

    def __init__(self, tagger, as_loc: set[str]) -> None:
        self.inner, self.as_loc = tagger, as_loc

    def __call__(self, texts):
        return [[dict(e, label="LOC") if e["text"] in self.as_loc else e for e in found]
                for found in self.inner(texts)]

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _client(tagger, **settings) -> TestClient:
    return TestClient(create_app(ServeSettings(**settings), tagger=tagger))


def _check_result(text: str, result: dict) -> None:
    assert set(result) == {"entities", "language"}
    for entity in result["entities"]:
        assert set(entity) == ENTITY_KEYS
        assert text[entity["start"]:entity["end"]] == entity["text"]
        assert entity["label"] in ("PER", "ORG", "LOC")
        assert 0.0 <= entity["score"] <= 1.0


def _error(response: httpx.Response, status: int, code: str | None = None, limit: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if limit is not None:
        assert body["error"]["limit"] == limit
    return body["error"]


@pytest.fixture()
def client(rule_tagger):
    with _client(rule_tagger) as c:
        yield c


# --- 200: health, ready, model, ner ------------------------------------------------------------------------------

def test_health_ready_and_model_info(client, rule_tagger):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    info = client.get("/v1/model")
    assert info.status_code == 200
    body = info.json()
    assert set(body) == {"name", "version", "languages", "labels", "parameters", "size_bytes", "backend", "limits"}
    import polyner

    assert body["version"] == polyner.__version__
    assert body["name"]  # the rule tagger has no name: the service calls it "polyner"
    assert body["labels"] == rule_tagger.labels == ["LOC", "ORG", "PER"]
    assert "de" in body["languages"] and "ru" in body["languages"]
    assert isinstance(body["parameters"], int) and isinstance(body["size_bytes"], int)
    assert body["backend"] == "torch"
    defaults = ServeSettings()
    for limit in ("max_texts_per_request", "max_chars_per_text", "max_chars_per_request", "max_batch_size",
                  "batch_wait_ms", "request_timeout_s"):
        assert body["limits"][limit] == getattr(defaults, limit)


def test_the_app_built_from_settings_tags_with_their_tagger_settings(tiny_model_dir, monkeypatch):
    """``create_app(settings)`` with no spec (the environment's path) honours threads, max_length and decoding."""
    monkeypatch.setenv("POLYNER_SERVE_DECODING", "argmax")
    monkeypatch.setenv("POLYNER_SERVE_MAX_LENGTH", "24")
    settings = ServeSettings.from_env(model=str(tiny_model_dir), threads=1)
    with TestClient(create_app(settings)) as c:
        config = c.app.state.tagger.config
        assert (config.max_length, config.decoding) == (24, "argmax")
        assert c.post("/v1/ner", json={"texts": [GERMAN]}).status_code == 200


def test_model_info_of_a_loaded_directory(tiny_model_dir):
    """Loaded from a directory (no tagger injected): parameters and size on disk are counted."""
    with TestClient(create_app(ServeSettings(model=str(tiny_model_dir)))) as c:
        body = c.get("/v1/model").json()
        assert body["name"] == tiny_model_dir.name
        assert body["parameters"] > 0 and body["size_bytes"] > 0
        response = c.post("/v1/ner", json={"texts": [GERMAN]})
        assert response.status_code == 200
        _check_result(GERMAN, response.json()["results"][0])


def test_ner_results_in_order_with_offsets_and_detected_language(client):
    texts = [GERMAN, RUSSIAN, "Lionel Messi jugó muchos años en Barcelona antes de irse a París con su familia."]
    response = client.post("/v1/ner", json={"texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "results"} and body["model"]
    results = body["results"]
    assert len(results) == len(texts)
    for text, result in zip(texts, results):
        _check_result(text, result)
    assert [e["text"] for e in results[0]["entities"]] == ["Angela Merkel", "Paris", "Emmanuel Macron"]
    assert [e["text"] for e in results[1]["entities"]] == ["Владимир Путин", "Москву"]
    assert results[0]["entities"][0] == {"text": "Angela Merkel", "label": "PER", "start": 0, "end": 13,
                                         "score": results[0]["entities"][0]["score"]}
    assert [r["language"] for r in results[:2]] == ["de", "ru"]
    assert results[2]["language"] == "es"


@pytest.mark.parametrize("text", ["Angela Merkel in Paris", "Petr Fiala jednal v Bruselu.", "Путин в Москве"])
def test_a_text_too_short_to_tell_has_no_language(client, text):
    """langdetect is sure and wrong on a few Latin or Cyrillic words (Indonesian, Slovene): no guess is better."""
    assert client.post("/v1/ner", json={"texts": [text]}).json()["results"][0]["language"] is None


def test_ner_given_language_is_echoed_normalised(client):
    response = client.post("/v1/ner", json={"texts": [GERMAN, RUSSIAN], "language": "FR"})
    assert response.status_code == 200
    assert [r["language"] for r in response.json()["results"]] == ["fr", "fr"]
    response = client.post("/v1/ner", json={"texts": [GERMAN], "language": "pt-BR"})
    assert response.json()["results"][0]["language"] == "pt"


def test_labels_filter_keeps_only_those_types(rule_tagger):
    with _client(RelabelTagger(rule_tagger, {"Paris"})) as c:
        everything = c.post("/v1/ner", json={"texts": [GERMAN]}).json()["results"][0]["entities"]
        assert {e["label"] for e in everything} == {"PER", "LOC"}
        only_loc = c.post("/v1/ner", json={"texts": [GERMAN], "labels": ["LOC"]}).json()["results"][0]
        assert [(e["text"], e["label"]) for e in only_loc["entities"]] == [("Paris", "LOC")]
        only_per = c.post("/v1/ner", json={"texts": [GERMAN], "labels": ["PER"]}).json()["results"][0]
        assert [e["text"] for e in only_per["entities"]] == ["Angela Merkel", "Emmanuel Macron"]
        only_org = c.post("/v1/ner", json={"texts": [GERMAN], "labels": ["ORG"]}).json()["results"][0]
        assert only_org["entities"] == [] and only_org["language"] == "de"


def test_empty_and_whitespace_texts_give_no_entities(client):
    texts = ["", "   ", "\n\t  \n", GERMAN]
    response = client.post("/v1/ner", json={"texts": texts})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["entities"] for r in results[:3]] == [[], [], []]
    assert [r["language"] for r in results[:3]] == [None, None, None]  # no letters: no language
    assert results[3]["entities"]
    empty = client.post("/v1/ner", json={"texts": []})
    assert empty.status_code == 200 and empty.json()["results"] == []


# --- 401 ---------------------------------------------------------------------------------------------------------

def test_api_key(rule_tagger):
    with _client(rule_tagger, api_key="s3cret") as c:
        body = {"texts": [GERMAN]}
        _error(c.post("/v1/ner", json=body), 401, "unauthorized")
        _error(c.post("/v1/ner", json=body, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        _error(c.get("/v1/model"), 401, "unauthorized")
        ok = c.post("/v1/ner", json=body, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200 and ok.json()["results"][0]["entities"]
        assert c.get("/v1/model", headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200  # probes stay open


# --- 413 ---------------------------------------------------------------------------------------------------------

def test_each_limit_answers_413_naming_it(rule_tagger):
    with _client(rule_tagger, max_texts_per_request=3, max_chars_per_text=50, max_chars_per_request=120) as c:
        _error(c.post("/v1/ner", json={"texts": ["a"] * 4}), 413, "too_many_texts", "max_texts_per_request")
        assert c.post("/v1/ner", json={"texts": ["a"] * 3}).status_code == 200
        error = _error(c.post("/v1/ner", json={"texts": ["ok", "x" * 51]}), 413, "text_too_long",
                       "max_chars_per_text")
        assert "texts[1]" in error["message"]
        assert c.post("/v1/ner", json={"texts": ["x" * 50]}).status_code == 200
        _error(c.post("/v1/ner", json={"texts": ["x" * 45] * 3}), 413, "request_too_large", "max_chars_per_request")
        assert c.post("/v1/ner", json={"texts": ["x" * 40] * 3}).status_code == 200


# --- 422 ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, code", [
    (b'{"texts": ["unclosed"', "invalid_json"), (b"not json at all", "invalid_json"), (b"", "invalid_request"),
    (b'{"texts": ["a"],}', "invalid_json"),
])
def test_malformed_json_is_422(client, content, code):
    response = client.post("/v1/ner", content=content, headers={"Content-Type": "application/json"})
    _error(response, 422, code)


@pytest.mark.parametrize("content_type, says", [
    ("application/x-www-form-urlencoded", "Content-Type 'application/x-www-form-urlencoded' was sent"),  # curl -d
    ("text/plain", "Content-Type 'text/plain' was sent"),
    (None, "no Content-Type was sent"),
])
def test_a_body_without_the_json_content_type_is_told_which_header_to_send(client, content_type, says):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/ner", content=b'{"texts": ["Angela Merkel"]}', headers=headers)
    error = _error(response, 422, "invalid_request")
    assert "Content-Type application/json" in error["message"] and says in error["message"]


def test_a_json_subtype_is_no_content_type_error(client):
    response = client.post("/v1/ner", content=b'["Angela Merkel"]', headers={"Content-Type": "application/ld+json"})
    assert "Content-Type" not in _error(response, 422, "invalid_request")["message"]


def test_an_empty_json_body_names_what_is_expected(client):
    error = _error(client.post("/v1/ner", content=b"", headers={"Content-Type": "application/json"}), 422,
                   "invalid_request")
    assert error["message"].startswith('the body must be a JSON object such as {"texts": ["..."]}')


@pytest.mark.parametrize("body, where", [
    ({"texts": "just one string"}, "texts"),
    ({"texts": {"a": 1}}, "texts"),
    ({"texts": ["fine", 3]}, "texts.1"),
    ({"texts": ["fine", None]}, "texts.1"),
    ({}, "texts"),
    ({"texts": ["a"], "extra": 1}, "extra"),
    ({"texts": ["a"], "labels": ["PERSON"]}, "labels.0"),
    ({"texts": ["a"], "labels": "PER"}, "labels"),
    ({"texts": ["a"], "language": 7}, "language"),
    (["a", "b"], None),
])
def test_wrong_types_are_422(client, body, where):
    error = _error(client.post("/v1/ner", json=body), 422, "invalid_request")
    if where is not None:
        assert error["message"].startswith(f"{where}:"), error


@pytest.mark.parametrize("language", ["xx", "klingon", "", "zz-ZZ"])
def test_unknown_language_is_422(client, language):
    error = _error(client.post("/v1/ner", json={"texts": [GERMAN], "language": language}), 422, "unknown_language")
    assert repr(language) in error["message"]


# --- 503: model not loaded yet, and shutting down -----------------------------------------------------------------

def _asgi(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://polyner.test")


def test_503_while_the_model_loads_then_200(monkeypatch, rule_tagger, tmp_path):
    """create_app without a tagger loads ``settings.model`` in the lifespan; loading is held until released."""
    from types import SimpleNamespace

    from polyner.spec import ModelSpec

    release = threading.Event()
    asked: list = []

    def slow_load(path, backend=None):
        asked.append(path)
        assert release.wait(10), "never released"
        return rule_tagger

    monkeypatch.setattr(ModelSpec, "resolve", staticmethod(
        lambda path, backend=None, threads=None, **options: SimpleNamespace(build=lambda: slow_load(path, backend))))
    app = create_app(ServeSettings(model=str(tmp_path)))

    async def scenario():
        up, stop = asyncio.Event(), asyncio.Event()

        async def lifespan():
            async with app.router.lifespan_context(app):
                up.set()
                await stop.wait()

        life = asyncio.create_task(lifespan())
        try:
            async with _asgi(app) as http:
                for _ in range(100):  # until the loader runs on its thread
                    if asked:
                        break
                    await asyncio.sleep(0.01)
                assert asked == [str(tmp_path)] and not up.is_set()
                assert (await http.get("/health")).status_code == 200
                _error(await http.get("/ready"), 503, "not_ready")
                _error(await http.post("/v1/ner", json={"texts": [GERMAN]}), 503, "not_ready")
                release.set()
                await asyncio.wait_for(up.wait(), 10)
                assert (await http.get("/ready")).status_code == 200
                assert (await http.post("/v1/ner", json={"texts": [GERMAN]})).status_code == 200
        finally:
            release.set()
            stop.set()
            await asyncio.wait_for(life, 10)

    asyncio.run(scenario())


def test_503_without_lifespan(rule_tagger):
    """An app whose lifespan never ran (no ``with``) is not ready, even with a tagger given."""
    c = TestClient(create_app(ServeSettings(), tagger=rule_tagger))
    assert c.get("/health").status_code == 200
    for answer in (c.get("/ready"), c.post("/v1/ner", json={"texts": [GERMAN]})):
        _error(answer, 503, "not_ready")
        assert answer.headers["Retry-After"] == "1"  # every 503 says when to ask again


def test_graceful_shutdown_finishes_requests_in_flight_and_refuses_new_ones(rule_tagger):
    slow = SlowTagger(rule_tagger, 0.4)
    app = create_app(ServeSettings(graceful_shutdown_s=5), tagger=slow)

    async def scenario():
        up, stop = asyncio.Event(), asyncio.Event()

        async def lifespan():
            async with app.router.lifespan_context(app):
                up.set()
                await stop.wait()

        life = asyncio.create_task(lifespan())
        await asyncio.wait_for(up.wait(), 10)
        async with _asgi(app) as http:
            first = asyncio.create_task(http.post("/v1/ner", json={"texts": [GERMAN, RUSSIAN]}))
            while app.state.batcher.in_flight == 0:
                await asyncio.sleep(0.005)
            stop.set()  # the lifespan exits while ``first`` is being tagged
            while not app.state.closing:
                await asyncio.sleep(0.005)
            _error(await http.post("/v1/ner", json={"texts": [GERMAN]}), 503, "shutting_down")
            _error(await http.get("/ready"), 503, "shutting_down")
            assert not life.done()  # still draining
            response = await asyncio.wait_for(first, 10)
            await asyncio.wait_for(life, 10)
        assert response.status_code == 200
        assert [len(r["entities"]) for r in response.json()["results"]] == [3, 2]
        assert app.state.batcher.worker.done() and slow.calls == 1

    asyncio.run(scenario())


# --- 504 ---------------------------------------------------------------------------------------------------------

def test_504_when_tagging_is_slower_than_the_timeout(rule_tagger):
    slow = SlowTagger(rule_tagger, 2.0)
    with _client(slow, request_timeout_s=0.2) as c:
        error = _error(c.post("/v1/ner", json={"texts": [GERMAN]}), 504, "timeout", "request_timeout_s")
        assert slow.calls == 1 and slow.finished == 0  # answered while the model was still running
        assert "0.2" in error["message"]
        slow.delay = 0.0  # the service keeps answering once the model is quick again
        time.sleep(2.2)
        assert c.post("/v1/ner", json={"texts": [GERMAN]}).status_code == 200


# --- the micro-batcher -------------------------------------------------------------------------------------------

def _counting_predict(calls: list, fail_on: str | None = None, delay: float = 0.0):
    def predict(texts):
        calls.append(list(texts))
        if delay:
            time.sleep(delay)
        if fail_on is not None and fail_on in texts:
            raise RuntimeError(f"model failed on {fail_on!r}")
        return [text.upper() for text in texts]

    return predict


def test_batcher_gathers_concurrent_requests_into_fewer_calls():
    calls: list = []

    async def scenario():
        batcher = MicroBatcher(_counting_predict(calls), max_batch_size=32, wait_ms=20)
        batcher.start()
        requests = [[f"text {i}"] for i in range(12)] + [["a", "b", "c"]]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.drain(1)
        return requests, results, batcher

    requests, results, batcher = asyncio.run(scenario())
    assert results == [[t.upper() for t in r] for r in requests]  # each request gets its own answers, in order
    assert len(calls) < len(requests)
    assert len(calls) == 1 and len(calls[0]) == 15
    assert batcher.batches == len(calls) and batcher.in_flight == 0


def test_batcher_respects_max_batch_size_and_keeps_order_across_batches():
    calls: list = []

    async def scenario():
        batcher = MicroBatcher(_counting_predict(calls), max_batch_size=4, wait_ms=20)
        batcher.start()
        texts = [f"t{i}" for i in range(10)]
        results = await asyncio.gather(batcher.submit(texts), batcher.submit(["x", "y"]))
        await batcher.drain(1)
        return texts, results

    texts, (first, second) = asyncio.run(scenario())
    assert first == [t.upper() for t in texts] and second == ["X", "Y"]
    assert [len(c) for c in calls] == [4, 4, 4]


def test_batcher_unbatched_configuration_calls_once_per_text():
    calls: list = []

    async def scenario():
        batcher = MicroBatcher(_counting_predict(calls), max_batch_size=1, wait_ms=0)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(5)))
        await batcher.drain(1)
        return results

    assert asyncio.run(scenario()) == [[f"T{i}"] for i in range(5)]
    assert len(calls) == 5


def test_batcher_model_error_fails_only_that_batch_and_the_worker_keeps_serving():
    calls: list = []

    async def scenario():
        batcher = MicroBatcher(_counting_predict(calls, fail_on="boom"), max_batch_size=2, wait_ms=20)
        batcher.start()
        outcomes = await asyncio.gather(batcher.submit(["ok1"]), batcher.submit(["boom"]),
                                        batcher.submit(["ok2"]), batcher.submit(["ok3"]), return_exceptions=True)
        after = await batcher.submit(["later"])
        alive = not batcher.worker.done()
        await batcher.drain(1)
        return outcomes, after, alive

    outcomes, after, alive = asyncio.run(scenario())
    assert calls[:2] == [["ok1", "boom"], ["ok2", "ok3"]]
    assert all(isinstance(o, RuntimeError) and "boom" in str(o) for o in outcomes[:2])
    assert outcomes[2:] == [["OK2"], ["OK3"]]
    assert after == ["LATER"] and alive


def test_model_error_over_http_fails_the_request_but_not_the_service(rule_tagger):
    class Flaky(RelabelTagger):
        def __call__(self, texts):
            if any("boom" in t for t in texts):
                raise RuntimeError("model exploded")
            return self.inner(texts)

    with TestClient(create_app(ServeSettings(), tagger=Flaky(rule_tagger, set())), raise_server_exceptions=False) as c:
        assert c.post("/v1/ner", json={"texts": ["boom"]}).status_code == 500
        ok = c.post("/v1/ner", json={"texts": [GERMAN]})
        assert ok.status_code == 200 and len(ok.json()["results"][0]["entities"]) == 3


def test_batcher_drain_waits_for_running_work_then_stops():
    calls: list = []

    async def scenario():
        batcher = MicroBatcher(_counting_predict(calls, delay=0.3), max_batch_size=8, wait_ms=1)
        batcher.start()
        pending = asyncio.create_task(batcher.submit(["a", "b"]))
        while not calls:
            await asyncio.sleep(0.005)
        await batcher.drain(5)
        assert pending.done()
        return pending.result(), batcher.worker.done()

    assert asyncio.run(scenario()) == (["A", "B"], True)


def test_batcher_skips_texts_of_cancelled_requests():
    calls: list = []

    async def scenario():
        batcher = MicroBatcher(_counting_predict(calls, delay=0.2), max_batch_size=1, wait_ms=0)
        batcher.start()
        busy = asyncio.create_task(batcher.submit(["busy"]))
        while not calls:
            await asyncio.sleep(0.005)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.submit(["abandoned"]), 0.05)
        result = await busy
        assert await batcher.submit(["next"]) == ["NEXT"]
        await batcher.drain(1)
        return result

    assert asyncio.run(scenario()) == ["BUSY"]
    assert ["abandoned"] not in calls


# --- OpenAPI and the command line --------------------------------------------------------------------------------

def test_openapi_documents_ner_with_the_request_example(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/ner", "/v1/model", "/health", "/ready"} <= set(spec["paths"])
    post = spec["paths"]["/v1/ner"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"texts": ["Angela Merkel besuchte Paris.", "Владимир Путин прилетел в Москву."]} in schema["examples"]
    assert {"200", "401", "413", "422", "503", "504"} <= set(post["responses"])
    assert client.get("/docs").status_code == 200


def test_cli_serve_with_a_missing_model_exits_2_naming_the_path(tmp_path):
    from polyner.cli import app

    missing = tmp_path / "nonexistent"
    result = CliRunner().invoke(app, ["serve", "--model", str(missing), "--port", "1"])
    assert result.exit_code == 2, result.output
    assert str(missing) in result.stderr and "not found" in result.stderr
    result = CliRunner().invoke(app, ["serve", "--model", "/nonexistent"])
    assert result.exit_code == 2 and "/nonexistent" in result.stderr


# --- hostile input (issue 23): every refusal in the one error shape, before work is spent -------------------------

def test_lone_surrogate_is_a_422_naming_the_text_and_the_service_goes_on(client):
    """Valid JSON, invalid Unicode: ``\\ud800`` alone. It was a plain-text 500 (the response could not be encoded)."""
    body = b'{"texts": ["fine", "Angela\\ud800Merkel besuchte Paris."]}'
    error = _error(client.post("/v1/ner", content=body, headers={"Content-Type": "application/json"}), 422,
                   "invalid_text")
    assert "texts[1]" in error["message"] and "U+D800" in error["message"] and "character 6" in error["message"]
    pair = b'{"texts": ["\\ud83d\\ude00 Angela Merkel besuchte Paris."]}'  # a valid pair is one character
    ok = client.post("/v1/ner", content=pair, headers={"Content-Type": "application/json"})
    assert ok.status_code == 200
    _check_result("\U0001F600 Angela Merkel besuchte Paris.", ok.json()["results"][0])
    assert ok.json()["results"][0]["entities"][0]["start"] == 2


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/nowhere", 404, "not_found"), ("GET", "/v1/ner", 405, "method_not_allowed"),
    ("DELETE", "/v1/model", 405, "method_not_allowed"), ("POST", "/health", 405, "method_not_allowed"),
])
def test_framework_errors_have_the_one_shape(client, method, path, status, code):
    response = client.request(method, path)
    _error(response, status, code)
    if status == 405:
        assert response.headers["allow"]


@pytest.mark.parametrize("content, words", [
    (b'{"texts": ["caf\xe9"]}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"texts": ["a"]}\xff', "not UTF-8"),
])
def test_unparsable_bodies_are_422_in_the_one_shape(client, content, words):
    error = _error(client.post("/v1/ner", content=content, headers={"Content-Type": "application/json"}), 422,
                   "invalid_json")
    assert words in error["message"]


def test_an_unexpected_failure_is_a_json_500(rule_tagger):
    """A tagger giving a label outside the schema makes the response invalid: a 500 in the one shape, not text."""
    class Wrong(RelabelTagger):
        def __call__(self, texts):
            return [[dict(e, label="MISC") for e in found] for found in self.inner(texts)]

    with TestClient(create_app(ServeSettings(), tagger=Wrong(rule_tagger, set())), raise_server_exceptions=False) as c:
        _error(c.post("/v1/ner", json={"texts": [GERMAN]}), 500, "internal_error")
        assert c.get("/health").status_code == 200


class RecordingReceive:
    """An ASGI ``receive`` that hands out a body in chunks (optionally slowly) and counts how much was taken."""

    def __init__(self, chunks: list[bytes], delay: float = 0.0) -> None:
        self.chunks, self.delay, self.calls = list(chunks), delay, 0

    async def __call__(self) -> dict:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.chunks:
            await asyncio.sleep(3600)  # a client that never sends the rest
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}


async def _asgi_call(app, path: str, headers: dict[str, str], receive) -> tuple[int, dict, dict]:
    """Call ``app`` once as a server would; the status, headers and JSON body of its answer."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
             "raw_path": path.encode(), "root_path": "", "scheme": "http", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("polyner.test", 80)}
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    import json

    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body)


def test_the_key_is_checked_before_the_body_is_read(rule_tagger):
    app = create_app(ServeSettings(api_key="s3cret"), tagger=rule_tagger)
    huge = RecordingReceive([b"x" * 1_000_000] * 50)
    status, headers, body = asyncio.run(_asgi_call(app, "/v1/ner", {"content-length": "50000000"}, huge))
    assert (status, body["error"]["code"]) == (401, "unauthorized") and huge.calls == 0
    assert headers["connection"] == "close"  # the unread body cannot be followed by another request


def _running(app, call):
    """Run ``call()`` (a coroutine function) with the app's lifespan started, as under a server."""
    async def scenario():
        async with app.router.lifespan_context(app):
            return await call()

    return asyncio.run(scenario())


def test_bodies_over_max_body_bytes_are_refused_before_parsing(rule_tagger):
    app = create_app(ServeSettings(max_body_bytes=1000), tagger=rule_tagger)
    declared = RecordingReceive([b"{}"])
    status, _, body = _running(app, lambda: _asgi_call(app, "/v1/ner", {"content-length": "5000"}, declared))
    assert (status, body["error"]["code"], body["error"]["limit"]) == (413, "body_too_large", "max_body_bytes")
    assert declared.calls == 0  # refused on the header alone
    streamed = RecordingReceive([b"[" * 400] * 100)  # chunked, no Content-Length: counted as it arrives
    status, _, body = _running(app, lambda: _asgi_call(app, "/v1/ner", {"transfer-encoding": "chunked"}, streamed))
    assert (status, body["error"]["limit"]) == (413, "max_body_bytes") and streamed.calls == 3
    lying = RecordingReceive([b"[" * 600] * 3)  # says 600, sends more
    status, _, body = _running(app, lambda: _asgi_call(app, "/v1/ner", {"content-length": "600"}, lying))
    assert (status, body["error"]["limit"]) == (413, "max_body_bytes")
    status, _, body = _running(app, lambda: _asgi_call(app, "/v1/ner", {"content-length": "12x"},
                                                       RecordingReceive([b""])))
    assert (status, body["error"]["code"]) == (400, "invalid_request")


def test_a_trickled_body_is_a_408_after_body_timeout_s(rule_tagger):
    app = create_app(ServeSettings(body_timeout_s=0.3), tagger=rule_tagger)
    slow = RecordingReceive([b'{"texts": '] + [b" "] * 1000, delay=0.05)
    started = time.monotonic()
    status, headers, body = _running(app, lambda: _asgi_call(app, "/v1/ner", {"content-length": "1010"}, slow))
    assert (status, body["error"]["code"], body["error"]["limit"]) == (408, "body_timeout", "body_timeout_s")
    assert time.monotonic() - started < 2 and headers["connection"] == "close"


def test_a_full_queue_is_refused_at_once_with_retry_after(rule_tagger):
    """Load shedding: while earlier texts fill ``max_queue_chars``, a request is a 503 with Retry-After, answered
    at once (before its body is read), and the admitted requests are served."""
    slow = SlowTagger(rule_tagger, 0.5)
    settings = ServeSettings(max_chars_per_text=300, max_chars_per_request=300, max_queue_chars=300, batch_wait_ms=0)
    app = create_app(settings, tagger=slow)
    text = "Angela Merkel " * 20  # 280 characters (and a text's fixed cost): one such request fills the queue

    async def scenario():
        async with app.router.lifespan_context(app):
            async with _asgi(app) as http:
                first = asyncio.create_task(http.post("/v1/ner", json={"texts": [text]}))
                while app.state.batcher.queued_work == 0:
                    await asyncio.sleep(0.005)
                started = time.monotonic()
                refused = await http.post("/v1/ner", json={"texts": [text]})
                refused_after = time.monotonic() - started
                unread = RecordingReceive([b'{"texts": ["a"]}'])
                early = await _asgi_call(app, "/v1/ner", {"content-length": "16",
                                                          "content-type": "application/json"}, unread)
                return await first, refused, refused_after, early, unread.calls

    first, refused, refused_after, early, unread_calls = asyncio.run(scenario())
    assert first.status_code == 200
    error = _error(refused, 503, "overloaded", "max_queue_chars")
    assert int(refused.headers["retry-after"]) >= 1 and "max_queue_chars=300" in error["message"]
    assert refused_after < 0.3  # not after the 0.5 s the model takes
    assert early[0] == 503 and early[2]["error"]["code"] == "overloaded" and unread_calls == 0


def test_simultaneous_requests_cannot_all_slip_into_an_empty_queue(rule_tagger):
    """Admission and queueing are one step: of ten requests arriving together at an empty queue that holds one,
    one is tagged and nine are refused at once (none is left to time out)."""
    slow = SlowTagger(rule_tagger, 0.3)
    settings = ServeSettings(max_chars_per_text=300, max_chars_per_request=300, max_queue_chars=300)
    app = create_app(settings, tagger=slow)
    text = "Angela Merkel " * 20

    async def scenario():
        from polyner.serve.app import tag_within_limits

        async with app.router.lifespan_context(app):  # ten handlers reaching the queue in one turn of the loop
            return await asyncio.gather(*(tag_within_limits(app.state, [text], settings) for _ in range(10)),
                                        return_exceptions=True)

    outcomes = asyncio.run(scenario())
    refused = [o for o in outcomes if isinstance(o, APIError)]
    assert len(refused) == 9 and all((o.status, o.code) == (503, "overloaded") for o in refused)
    assert slow.calls == 1


def test_batcher_admission_by_measured_speed():
    """Once a batch has been timed, a request whose queue ahead would take longer than ``max_wait_s`` is refused;
    before that, the queue is bounded by ``unmeasured_chars``."""
    from polyner.serve.batcher import Overloaded

    def predict(texts):
        time.sleep(0.0002 * sum(len(t) for t in texts))  # 0.2 ms per character
        return texts

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=4, wait_ms=0, max_queue_chars=10_000_000, max_wait_s=0.6,
                               unmeasured_chars=2000)
        batcher.start()
        first = batcher.enqueue(["x" * 1000])
        with pytest.raises(Overloaded, match="until the model's speed is measured"):
            batcher.enqueue(["x" * 1000])  # nothing timed yet: the queue holds at most 2,000 characters
        await first  # measured: about 5,000 characters of work per second
        slow = asyncio.create_task(batcher.submit(["x" * 2000]))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(["x" * 2000])  # about 0.4 s queued + 0.4 s of its own > 0.6 s
        small = await batcher.submit(["x"])  # small enough to wait for
        await slow
        await batcher.drain(1)
        return refused.value, small, batcher.queued_work

    refused, small, left = asyncio.run(scenario())
    assert refused.retry_after >= 1 and "0.6 s" in str(refused)
    assert small == ["x"] and left == 0


def test_ready_is_503_as_soon_as_shutdown_begins_and_the_drain_window_ends_in_a_json_503(rule_tagger):
    """``begin_shutdown`` (what SIGTERM calls): /ready and new texts are 503 at once; a request still running when
    ``graceful_shutdown_s`` ends gets a JSON 503 naming that window (it was dropped with a plain-text 500)."""
    from polyner.serve.app import begin_shutdown

    slow = SlowTagger(rule_tagger, 1.5)
    app = create_app(ServeSettings(graceful_shutdown_s=0.3), tagger=slow)

    async def scenario():
        async with app.router.lifespan_context(app):
            async with _asgi(app) as http:
                running = asyncio.create_task(http.post("/v1/ner", json={"texts": [GERMAN]}))
                while app.state.batcher.in_flight == 0:
                    await asyncio.sleep(0.005)
                begin_shutdown(app)
                ready, new = await http.get("/ready"), await http.post("/v1/ner", json={"texts": [GERMAN]})
                started = time.monotonic()
                cut = await running
                return ready, new, cut, time.monotonic() - started

    ready, new, cut, waited = asyncio.run(scenario())
    _error(ready, 503, "shutting_down")
    _error(new, 503, "shutting_down")
    _error(cut, 503, "shutting_down", "graceful_shutdown_s")
    assert waited < 1.0  # at the end of the 0.3 s window, not after the 1.5 s the model takes


@pytest.mark.parametrize("field, value, words", [
    ("max_batch_size", 0, "max_batch_size must be a whole number of at least 1"),
    ("max_texts_per_request", -1, "max_texts_per_request"), ("request_timeout_s", 0, "request_timeout_s"),
    ("request_timeout_s", float("inf"), "finite"), ("graceful_shutdown_s", -1, "graceful_shutdown_s"),
    ("max_chars_per_text", 10 ** 6, "no request could carry"), ("max_queue_chars", 10, "never be admitted"),
    ("backend", "tpu", "unknown backend"), ("api_key", "  ", "empty"), ("max_connections", True, "max_connections"),
    ("decoding", "beam", "unknown decoding 'beam'"), ("threads", 0, "threads must be an int of at least 1"),
    ("threads", True, "threads must be an int"), ("max_length", -5, "max_length must be an int of at least 4"),
    ("max_length", 2, "max_length must be an int of at least 4"),  # what the tagger refuses, refused at start
])
def test_bad_settings_are_refused_when_made(field, value, words):
    with pytest.raises(ValueError, match=words):
        ServeSettings(**{field: value})


def test_the_older_key_variable_is_honoured_by_the_app_too(monkeypatch):
    """POLYNER_API_KEY (the CLI's older name) must not be dropped where the app is built by another ASGI server:
    the service would run open. The POLYNER_SERVE_ name wins where both are set."""
    monkeypatch.delenv("POLYNER_SERVE_API_KEY", raising=False)
    monkeypatch.setenv("POLYNER_API_KEY", "old-name")
    assert ServeSettings.from_env().api_key == "old-name"
    monkeypatch.setenv("POLYNER_SERVE_API_KEY", "new-name")
    assert ServeSettings.from_env().api_key == "new-name"
    assert ServeSettings.from_env(api_key="flag").api_key == "flag"
    monkeypatch.delenv("POLYNER_SERVE_API_KEY")
    monkeypatch.setenv("POLYNER_API_KEY", "  ")
    with pytest.raises(ValueError, match="^POLYNER_API_KEY: api_key"):
        ServeSettings.from_env()


def test_settings_from_the_environment_name_the_variable(monkeypatch):
    monkeypatch.setenv("POLYNER_SERVE_MAX_BATCH_SIZE", "lots")
    with pytest.raises(ValueError, match="POLYNER_SERVE_MAX_BATCH_SIZE must be a whole number, not 'lots'"):
        ServeSettings.from_env()
    monkeypatch.setenv("POLYNER_SERVE_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="^POLYNER_SERVE_MAX_BATCH_SIZE: max_batch_size must be"):
        ServeSettings.from_env()
    assert ServeSettings.from_env(max_batch_size=8).max_batch_size == 8  # a flag wins over the variable
    monkeypatch.setenv("POLYNER_SERVE_GRACEFUL_SHUTDOWN_S", "2.5")
    assert ServeSettings.from_env(max_batch_size=8).graceful_shutdown_s == 2.5
