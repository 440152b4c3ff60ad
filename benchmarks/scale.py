"""Corpus tagging throughput with 1 and 2 workers through each path of ``polyner tag-corpus``.

Builds a JSON-lines corpus from the unlabeled text (languages interleaved, one sentence a document),
tags it with every path, checks the outputs are identical, and prints documents per second with the
speed-up of 2 workers over 1::

    python benchmarks/scale.py                                  # 2,000 documents, the shipped model
    python benchmarks/scale.py --docs 20000 --model runs/student-xs --engines process,ray
    python benchmarks/scale.py --docs 100 --engines local,process    # a quick smoke run

Two rates are given: *end to end* (wall time of the whole run: worker start-up, Ray start-up and model
loading included) and *steady* (records after the first shard over the time between the first and the
last shard file, taken from the shard files' modification times: start-up excluded). The speed-up is on
the steady rate. Workers use one torch thread each; ``local (2 threads)`` is one process with two threads.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SHARED_UNLABELED = Path(__file__).resolve().parents[2] / "shared" / "data" / "unlabeled"


@dataclass
class Measure:
    path: str
    workers: int
    threads: int
    docs: int
    seconds: float
    steady: float
    digest: str

    @property
    def end_to_end(self) -> float:
        return self.docs / self.seconds


def build_corpus(source: Path, docs: int, out: Path, languages: list[str] | None) -> int:
    """Interleave the languages' lines (one document per line) into a JSONL file of at most ``docs`` records."""
    files = sorted(source.glob("*.txt"))
    if languages:
        files = [f for f in files if f.stem in languages]
    if not files:
        raise SystemExit(f"no unlabeled LANG.txt files in {source}: pass --unlabeled")
    lines = {f.stem: [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()] for f in files}
    written = 0
    with out.open("w", encoding="utf-8") as handle:
        for row in range(max(map(len, lines.values()))):
            for lang, texts in lines.items():
                if written == docs:
                    return written
                if row < len(texts):
                    handle.write(json.dumps({"id": f"{lang}-{row}", "text": texts[row]}, ensure_ascii=False) + "\n")
                    written += 1
    return written


def steady_rate(folder: Path, shard_size: int) -> float:
    """Records per second between the first and the last finished shard file."""
    parts = sorted(folder.glob("part-*.jsonl"), key=lambda p: p.stat().st_mtime)
    if len(parts) < 2:
        return float("nan")
    records = sum(sum(1 for _ in p.open(encoding="utf-8")) for p in parts[1:])
    span = parts[-1].stat().st_mtime - parts[0].stat().st_mtime
    return records / span if span > 0 else float("nan")


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for part in sorted(folder.glob("part-*.jsonl")):
        h.update(part.read_bytes())
    return h.hexdigest()[:12]


def run(corpus: Path, work: Path, engine: str, workers: int, threads: int, args) -> Measure:
    from polyner.corpus import TagCorpusConfig, tag_corpus

    out = work / f"{engine}-{workers}x{threads}"
    config = TagCorpusConfig(input=str(corpus), output=str(out), model=args.model, engine=engine, workers=workers,
                             threads=threads, batch_size=args.batch_size, shard_size=args.shard_size,
                             overwrite=True, progress=False)
    started = time.perf_counter()
    summary = tag_corpus(config)
    seconds = time.perf_counter() - started
    label = engine if threads == 1 else f"{engine} ({threads} threads)"
    return Measure(label, workers, threads, summary.records, seconds, steady_rate(out, args.shard_size), digest(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents in the corpus")
    parser.add_argument("--unlabeled", type=Path, default=SHARED_UNLABELED, help="folder of LANG.txt files")
    parser.add_argument("--languages", default=None, help="comma-separated languages (default: all)")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped student)")
    parser.add_argument("--engines", default="local,process,ray", help="paths to measure")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "ray" in engines:
        try:
            import ray.data  # noqa: F401
        except ImportError:
            print("ray is not installed (pip install 'polyner[ray]'): skipping the ray path", file=sys.stderr)
            engines.remove("ray")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="polyner-scale-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus.jsonl"
        docs = build_corpus(args.unlabeled, args.docs, corpus,
                            [x.strip() for x in args.languages.split(",")] if args.languages else None)
        print(f"{docs} documents, shards of {args.shard_size}, model {args.model or 'polyner (shipped)'}, "
              f"{os.cpu_count()} CPUs", flush=True)
        plan = []
        for engine in engines:
            if engine == "local":
                plan += [("local", 1, 1), ("local", 1, 2)]
            else:
                plan += [(engine, 1, 1), (engine, 2, 1)]
        results = []
        for engine, workers, threads in plan:
            results.append(run(corpus, work, engine, workers, threads, args))
            m = results[-1]
            print(f"  done: {m.path} x{m.workers}: {m.seconds:.1f} s", file=sys.stderr, flush=True)
    one_worker = {m.path: m for m in results if m.workers == 1}
    local = one_worker.get("local")
    print("\n| path | workers | seconds | docs/s end to end | docs/s steady | speed-up vs 1 worker | vs local |")
    print("|---|---|---|---|---|---|---|")
    for m in results:
        scale = f"{m.steady / one_worker[m.path].steady:.2f}x" if m.workers > 1 else ""
        versus = f"{m.steady / local.steady:.2f}x" if local is not None else ""
        print(f"| {m.path} | {m.workers} | {m.seconds:.1f} | {m.end_to_end:.1f} | {m.steady:.1f} | {scale} | {versus} |")
    identical = len({m.digest for m in results}) == 1
    print(f"\noutputs identical across paths: {'yes' if identical else 'NO'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
