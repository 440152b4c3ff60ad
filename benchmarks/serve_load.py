"""Load test of the HTTP service: micro-batched against unbatched, on loopback only.

For each configuration the script starts the real server (``python -m polyner.cli serve`` in a
subprocess, on 127.0.0.1 and a free port), waits for ``/ready``, sends a bounded number of
``POST /v1/ner`` requests from a fixed number of concurrent ``httpx.AsyncClient`` workers, stops the
server itself and finally prints one table::

    python benchmarks/serve_load.py                      # 2,000 requests, 32 clients, the shipped model
    python benchmarks/serve_load.py --model runs/student --requests 500 --concurrency 16 --texts-per-request 4
    python benchmarks/serve_load.py --overload           # 400 heavy requests at once: 200 or 503, in time

The overload run sends ``--overload-requests`` requests of ``--overload-texts`` texts of ``--overload-chars``
characters all at once, each on its own connection, to a server whose request timeout is
``--server-request-timeout`` seconds: every answer must be a 200 or a 503/429 (load shed, connection refused)
and none may take longer than that timeout; otherwise the exit status is 1.

Every request is counted: a non-200 answer or a transport error is an error, and any error makes the
exit status 1. Everything is bounded: ``--requests`` per configuration, ``--timeout`` seconds in all.
Start-up (model loading) and a short warm-up are not timed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # loopback only, never another address

# Real-looking sentences with people, organisations and places, in 15 languages.
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris to discuss the future of the European Union.",
    "Apple opened a new office in Austin, Texas, according to Tim Cook.",
    "Die Deutsche Bahn kündigte an, dass Richard Lutz die Strecke zwischen Berlin und München ausbauen will.",
    "Der FC Bayern München verpflichtete Harry Kane von Tottenham Hotspur.",
    "Le président Emmanuel Macron a reçu Olaf Scholz à l'Élysée mardi dernier.",
    "Marie Curie a travaillé à l'Université de Paris avant de rejoindre l'Institut Pasteur.",
    "Lionel Messi jugó en el FC Barcelona antes de mudarse a Miami con el Inter Miami.",
    "El Banco de España publicó un informe firmado por Pablo Hernández de Cos en Madrid.",
    "Giorgia Meloni ha incontrato i dirigenti della FIAT a Torino.",
    "Il Politecnico di Milano ha premiato Fabiola Gianotti per le sue ricerche al CERN di Ginevra.",
    "O presidente Luiz Inácio Lula da Silva visitou a Petrobras no Rio de Janeiro.",
    "A Universidade de Coimbra recebeu José Saramago em Portugal.",
    "Mark Rutte sprak in Den Haag met vertegenwoordigers van Philips en Shell.",
    "Andrzej Duda spotkał się w Warszawie z prezesem Orlenu Danielem Obajtkiem.",
    "Владимир Путин встретился с Сергеем Лавровым в Кремле в Москве.",
    "Компания «Газпром» открыла новый офис в Санкт-Петербурге, сообщил Алексей Миллер.",
    "Володимир Зеленський виступив у Верховній Раді в Києві.",
    "Recep Tayyip Erdoğan, Ankara'da Türk Hava Yolları yöneticileriyle görüştü.",
    "Orhan Pamuk İstanbul Üniversitesi'nde bir konuşma yaptı.",
    "ذهب محمد بن سلمان إلى القاهرة للقاء عبد الفتاح السيسي في مقر جامعة الدول العربية.",
    "أعلنت شركة أرامكو عن مشروع جديد في الرياض.",
    "नरेंद्र मोदी ने नई दिल्ली में टाटा समूह के अधिकारियों से मुलाकात की।",
    "सचिन तेंदुलकर ने मुंबई में भारतीय क्रिकेट कंट्रोल बोर्ड के कार्यक्रम में भाग लिया।",
    "习近平在北京会见了联合国秘书长古特雷斯。",
    "马云在杭州创办了阿里巴巴集团。",
    "岸田文雄首相は東京でトヨタ自動車の豊田章男会長と会談した。",
    "村上春樹は京都大学で講演を行った。",
    "Ο Κυριάκος Μητσοτάκης συναντήθηκε με εκπροσώπους της Εθνικής Τράπεζας στην Αθήνα.",
    "Joko Widodo meresmikan kantor baru Garuda Indonesia di Jakarta.",
    "Kim Jong-un visited Pyongyang with officials from the Korean Workers' Party.",
    "Nelson Mandela studeerde aan de Universiteit van Fort Hare in Zuid-Afrika.",
    "Kofi Annan, the former head of the United Nations, was born in Kumasi, Ghana.",
]

CONFIGURATIONS = [("micro-batched", 32, 5.0), ("unbatched", 1, 0.0)]


@dataclass
class Outcome:
    name: str
    max_batch_size: int
    batch_wait_ms: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    wall: float = 0.0
    texts: int = 0

    def record_error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 5:
            self.error_examples.append(what)

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of successful latencies, in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
        return ordered[rank - 1] * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    @property
    def tps(self) -> float:
        return self.texts / self.wall if self.wall else 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Server:
    """``polyner serve`` in a subprocess; its log goes to a temporary file (never a pipe that could fill)."""

    def __init__(self, model: str | None, max_batch_size: int, batch_wait_ms: float, max_texts: int,
                 log_level: str, extra: list[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [sys.executable, "-m", "polyner.cli", "serve", "--host", HOST, "--port", str(self.port),
                   "--max-batch-size", str(max_batch_size), "--batch-wait-ms", str(batch_wait_ms),
                   "--log-level", log_level, *extra]
        if model is not None:
            command += ["--model", model]
        if max_texts > 64:
            command += ["--max-texts-per-request", str(max_texts)]
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    async def wait_ready(self, timeout: float, headers: dict) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0, headers=headers) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited with code {self.process.returncode}:\n{self.output()}")
                try:
                    if (await client.get("/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{self.output()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (uvicorn's graceful shutdown), then SIGKILL of this one process if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def payloads(count: int, per_request: int) -> list[dict]:
    """``count`` request bodies cycling through TEXTS, ``per_request`` texts each."""
    bodies, i = [], 0
    for _ in range(count):
        bodies.append({"texts": [TEXTS[(i + k) % len(TEXTS)] for k in range(per_request)]})
        i += per_request
    return bodies


async def load(url: str, bodies: list[dict], concurrency: int, outcome: Outcome, headers: dict,
               request_timeout: float) -> None:
    """``concurrency`` workers send the bodies one after another; each latency and error is recorded."""
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=request_timeout, headers=headers) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/ner", json=body)
                except httpx.HTTPError as exc:
                    outcome.record_error(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    outcome.record_error(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                results = response.json().get("results", [])
                if len(results) != len(body["texts"]):
                    outcome.record_error(f"{len(results)} results for {len(body['texts'])} texts")
                    continue
                outcome.latencies.append(elapsed)
                outcome.texts += len(body["texts"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        outcome.wall = time.perf_counter() - started


async def run_configuration(args, name: str, max_batch_size: int, batch_wait_ms: float, headers: dict,
                            deadline: float) -> Outcome:
    outcome = Outcome(name, max_batch_size, batch_wait_ms)
    server = Server(args.model, max_batch_size, batch_wait_ms, args.texts_per_request, args.server_log_level)
    try:
        remaining = deadline - time.monotonic()
        await server.wait_ready(min(args.startup_timeout, remaining), headers)
        print(f"[{name}] server ready on {server.url} (max_batch_size={max_batch_size}, "
              f"batch_wait_ms={batch_wait_ms:g}); {args.requests} requests from {args.concurrency} clients",
              file=sys.stderr, flush=True)
        warmup = Outcome(name, max_batch_size, batch_wait_ms)
        await load(server.url, payloads(args.warmup, args.texts_per_request), min(args.concurrency, args.warmup or 1),
                   warmup, headers, args.request_timeout)
        if warmup.errors:
            outcome.errors += warmup.errors
            outcome.error_examples += warmup.error_examples
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError
        await asyncio.wait_for(load(server.url, payloads(args.requests, args.texts_per_request), args.concurrency,
                                    outcome, headers, args.request_timeout), remaining)
    finally:
        server.stop()
    return outcome


def heavy_bodies(count: int, texts: int, chars: int) -> list[dict]:
    """``count`` request bodies of ``texts`` texts of about ``chars`` characters each (sentences of TEXTS)."""
    long_texts = []
    for k in range(texts):
        sentences, size, i = [], 0, k
        while size < chars:
            sentence = TEXTS[i % len(TEXTS)]
            sentences.append(sentence)
            size += len(sentence) + 1
            i += 1
        long_texts.append(" ".join(sentences)[:chars])
    return [{"texts": long_texts} for _ in range(count)]


@dataclass
class OverloadOutcome:
    """Every answer of the overload run: status (0: a transport error) and seconds, per request."""

    answers: list[tuple[int, float]] = field(default_factory=list)
    examples: dict[int, str] = field(default_factory=dict)
    wall: float = 0.0

    def by_status(self) -> dict[int, list[float]]:
        grouped: dict[int, list[float]] = {}
        for status, seconds in self.answers:
            grouped.setdefault(status, []).append(seconds)
        return grouped


async def overload(url: str, bodies: list[dict], outcome: OverloadOutcome, headers: dict,
                   client_timeout: float) -> None:
    """Send every body at once, each on its own connection, and record each answer's status and time."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=client_timeout, headers=headers) as client:

        async def one(body: dict) -> None:
            started = time.perf_counter()
            try:
                response = await client.post("/v1/ner", json=body)
                status = response.status_code
                if status not in outcome.examples:
                    outcome.examples[status] = response.text[:200]
            except httpx.HTTPError as exc:
                status = 0
                outcome.examples.setdefault(0, f"{type(exc).__name__}: {exc}")
            outcome.answers.append((status, time.perf_counter() - started))

        started = time.perf_counter()
        await asyncio.gather(*(one(body) for body in bodies))
        outcome.wall = time.perf_counter() - started


async def run_overload(args, headers: dict, deadline: float) -> OverloadOutcome:
    """The service at its default limits but ``--server-request-timeout`` s, under ``--overload-requests``
    simultaneous heavy requests (``--overload-texts`` texts of ``--overload-chars`` characters each)."""
    outcome = OverloadOutcome()
    server = Server(args.model, 32, 5.0, args.overload_texts, args.server_log_level,
                    ["--request-timeout-s", f"{args.server_request_timeout:g}"])
    try:
        await server.wait_ready(min(args.startup_timeout, deadline - time.monotonic()), headers)
        print(f"[overload] server ready on {server.url} (request_timeout_s={args.server_request_timeout:g}); "
              f"{args.overload_requests} requests of {args.overload_texts} x {args.overload_chars} characters at once",
              file=sys.stderr, flush=True)
        warmup = OverloadOutcome()
        await overload(server.url, heavy_bodies(1, args.overload_texts, args.overload_chars), warmup, headers,
                       args.request_timeout)
        bodies = heavy_bodies(args.overload_requests, args.overload_texts, args.overload_chars)
        await asyncio.wait_for(overload(server.url, bodies, outcome, headers, args.request_timeout),
                               deadline - time.monotonic())
    finally:
        server.stop()
    return outcome


def overload_report(outcome: OverloadOutcome, timeout: float) -> tuple[str, list[str]]:
    """The table of answers by status, and the ways the run broke its promise (none: it kept it)."""
    head = ["status", "answers", "p50 ms", "p99 ms", "max ms"]
    rows = []
    for status, seconds in sorted(outcome.by_status().items()):
        ordered = sorted(seconds)
        pick = lambda q: ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))] * 1000
        rows.append([str(status or "transport error"), str(len(ordered)), f"{pick(50):.0f}", f"{pick(99):.0f}",
                     f"{ordered[-1] * 1000:.0f}"])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    text = [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    text.append(f"{len(outcome.answers)} requests in {outcome.wall:.1f} s; request_timeout_s={timeout:g}")
    broken = [f"{n} answers with status {status or 'transport error'}: {outcome.examples.get(status, '')}"
              for status, n in ((s, len(v)) for s, v in outcome.by_status().items()) if status not in (200, 429, 503)]
    slowest = max((seconds for _, seconds in outcome.answers), default=0.0)
    if slowest > timeout:
        broken.append(f"an answer took {slowest:.2f} s, longer than request_timeout_s={timeout:g}")
    return "\n".join(text), broken


def table(outcomes: list[Outcome], texts_per_request: int) -> str:
    head = ["configuration", "batch", "wait ms", "requests", "errors", "req/s", "texts/s",
            "p50 ms", "p95 ms", "p99 ms"]
    rows = [[o.name, str(o.max_batch_size), f"{o.batch_wait_ms:g}", str(o.requests), str(o.errors),
             f"{o.rps:.1f}", f"{o.tps:.1f}", f"{o.percentile(50):.1f}", f"{o.percentile(95):.1f}",
             f"{o.percentile(99):.1f}"] for o in outcomes]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    byname = {o.name: o for o in outcomes}
    if {"micro-batched", "unbatched"} <= set(byname) and byname["unbatched"].rps:
        ratio = byname["micro-batched"].rps / byname["unbatched"].rps
        out.append(f"throughput ratio micro-batched / unbatched: {ratio:.2f}x "
                   f"({texts_per_request} text{'s' if texts_per_request != 1 else ''} per request)")
    return "\n".join(out)


def positive(kind):
    def parse(raw: str):
        value = kind(raw)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {raw}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=positive(int), default=2000, help="timed requests per configuration")
    parser.add_argument("--concurrency", type=positive(int), default=32, help="concurrent clients")
    parser.add_argument("--model", default=None, help="model directory or name (default: the shipped model)")
    parser.add_argument("--texts-per-request", type=positive(int), default=1)
    parser.add_argument("--warmup", type=int, default=16, help="untimed requests after start-up (default 16)")
    parser.add_argument("--timeout", type=positive(float), default=900.0, help="global time limit in seconds")
    parser.add_argument("--startup-timeout", type=positive(float), default=180.0, help="seconds to wait for /ready")
    parser.add_argument("--request-timeout", type=positive(float), default=60.0, help="client timeout per request")
    parser.add_argument("--only", choices=[c[0] for c in CONFIGURATIONS], help="run one configuration")
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument("--overload", action="store_true",
                        help="instead: hundreds of heavy requests at once; every answer must be 200 or 503/429 "
                             "within the server's request timeout")
    parser.add_argument("--overload-requests", type=positive(int), default=400)
    parser.add_argument("--overload-texts", type=positive(int), default=8, help="texts per heavy request")
    parser.add_argument("--overload-chars", type=positive(int), default=1000, help="characters per text")
    parser.add_argument("--server-request-timeout", type=positive(float), default=10.0,
                        help="the server's --request-timeout-s in the overload run")
    args = parser.parse_args(argv)
    if args.model is not None and Path(args.model).expanduser().exists():
        args.model = str(Path(args.model).expanduser().resolve())

    headers = {"X-API-Key": os.environ["POLYNER_API_KEY"]} if os.environ.get("POLYNER_API_KEY") else {}
    deadline = time.monotonic() + args.timeout
    if args.overload:
        try:
            result = asyncio.run(run_overload(args, headers, deadline))
        except (asyncio.TimeoutError, RuntimeError) as exc:
            print(f"error: {exc or 'the global timeout ran out'}", file=sys.stderr)
            return 1
        report, broken = overload_report(result, args.server_request_timeout)
        print(report)
        for problem in broken:
            print(f"error: {problem}", file=sys.stderr)
        return 1 if broken else 0
    outcomes: list[Outcome] = []
    for name, batch, wait in CONFIGURATIONS:
        if args.only and name != args.only:
            continue
        try:
            outcomes.append(asyncio.run(run_configuration(args, name, batch, wait, headers, deadline)))
        except asyncio.TimeoutError:
            print(f"error: the global timeout of {args.timeout:g} s ran out during '{name}'", file=sys.stderr)
            return 1
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if args.model is None:
                print("hint: without --model the shipped default model is served; pass --model PATH "
                      "if this installation has none", file=sys.stderr)
            return 1

    print(table(outcomes, args.texts_per_request))
    errors = sum(o.errors for o in outcomes)
    if errors:
        for o in outcomes:
            for example in o.error_examples:
                print(f"[{o.name}] {example}", file=sys.stderr)
        print(f"error: {errors} failed request(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
