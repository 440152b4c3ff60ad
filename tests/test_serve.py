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
    import polyner

    release = threading.Event()
    asked: list = []

    def slow_load(path, backend=None):
        asked.append(path)
        assert release.wait(10), "never released"
        return rule_tagger

    monkeypatch.setattr(polyner, "load", slow_load)
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
    _error(c.get("/ready"), 503, "not_ready")
    _error(c.post("/v1/ner", json={"texts": [GERMAN]}), 503, "not_ready")


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
            _error(await http.post("/v1/ner", json={"texts": [GERMAN]}), 503, "not_ready")
            _error(await http.get("/ready"), 503, "not_ready")
            assert not life.done()  # still draining
            response = await asyncio.wait_for(first, 10)
            await asyncio.wait_for(life, 10)
        assert response.status_code == 200
        assert [len(r["entities"]) for r in response.json()["results"]] == [3, 2]
        assert app.state.batcher.worker.done() and slow.calls == 1

    asyncio.run(scenario())


def test_graceful_shutdown_with_testclient_closed_under_a_request(rule_tagger):
    """The same through TestClient: a slow request in a thread, the client closed meanwhile."""
    slow = SlowTagger(rule_tagger, 0.5)
    app = create_app(ServeSettings(graceful_shutdown_s=5), tagger=slow)
    answers: list = []
    with TestClient(app) as c:
        worker = threading.Thread(target=lambda: answers.append(c.post("/v1/ner", json={"texts": [GERMAN]})))
        worker.start()
        deadline = time.monotonic() + 5
        while app.state.batcher.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert app.state.batcher.in_flight == 1
    worker.join(5)
    assert answers and answers[0].status_code == 200
    assert len(answers[0].json()["results"][0]["entities"]) == 3


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
