"""Where shards are tagged: in this process, in spawned worker processes, or on a Ray cluster.

Every engine takes the shards still to do and yields their :class:`ShardResult` in shard order,
keeping only a bounded number of shards in flight, so memory stays bounded on any input size.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Iterable, Iterator

from polyner.corpus.reader import ShardSpec
from polyner.corpus.tagging import ShardResult, ShardTagger
from polyner.errors import UserError

if TYPE_CHECKING:
    from polyner.spec import ModelSpec

logger = logging.getLogger(__name__)

ENGINES = ("local", "process", "ray")


class RayUnavailableError(UserError, ImportError):
    """Ray is not installed: it is an optional extra."""


def require_ray():
    """Import ray (with Ray Data) or fail with the install command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        from polyner.extras import install_hint

        raise RayUnavailableError(f"{install_hint('--engine ray', ['ray'])} ({exc})") from exc
    return ray


def run_local(specs: Iterable[ShardSpec], model: ModelSpec) -> Iterator[ShardResult]:
    """Tag the shards one after another in this process (the model is loaded once, before the first shard)."""
    tagger = ShardTagger(model)
    return (tagger(spec) for spec in specs)


_WORKER: ShardTagger | None = None


def _init_worker(model: ModelSpec) -> None:
    global _WORKER
    _WORKER = ShardTagger(model)


def _tag_in_worker(spec: ShardSpec) -> ShardResult:
    assert _WORKER is not None, "worker used before its initializer ran"
    return _WORKER(spec)


def run_process(specs: Iterable[ShardSpec], model: ModelSpec, workers: int,
                in_flight_per_worker: int = 2) -> Iterator[ShardResult]:
    """Tag shards in ``workers`` spawned processes, each loading the model once; results in shard order."""
    context = multiprocessing.get_context("spawn")
    window: deque[Future] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(model,)) as pool:
        for spec in specs:
            window.append(pool.submit(_tag_in_worker, spec))
            if len(window) >= workers * in_flight_per_worker:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


class RayShardTagger:
    """The callable class of ``map_batches``: one per Ray actor, loading the model once."""

    def __init__(self, model: ModelSpec) -> None:
        self.tagger = ShardTagger(model)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        shards, lines, errors = [], [], []
        for encoded in batch["spec"]:
            data = json.loads(encoded)
            result = self.tagger(ShardSpec(**{**data, "keep_fields": tuple(data["keep_fields"])}))
            shards += [result.shard] * len(result.lines)
            lines += result.lines
            errors += [result.errors] * len(result.lines)
        return {"shard": np.asarray(shards, dtype=np.int64), "line": np.asarray(lines, dtype=object),
                "shard_errors": np.asarray(errors, dtype=np.int64)}


def run_ray(specs: Iterable[ShardSpec], model: ModelSpec, workers: int,
            address: str | None = None) -> Iterator[ShardResult]:
    """Ray Data ``map_batches`` over an actor pool of ``workers`` actors (one shard per call), order preserved.

    Without ``address`` a local Ray with ``workers`` CPUs is started and stopped again; with it, the
    run joins that cluster (e.g. ``auto`` or ``ray://head:10001``), whose nodes must all see the input
    path and the model directory.
    """
    ray = require_ray()
    specs = list(specs)
    if not specs:
        return
    started = False
    if not ray.is_initialized():
        options = dict(logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, **options)
            started = True
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        counts = {spec.shard: spec.count for spec in specs}
        dataset = ray.data.from_items([{"spec": json.dumps(asdict(spec))} for spec in specs],
                                      override_num_blocks=len(specs))
        dataset = dataset.map_batches(RayShardTagger, fn_constructor_kwargs={"model": model},
                                      batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                                      num_cpus=1)
        pending: dict[int, list[str]] = {}
        errors: dict[int, int] = {}
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for shard, line, shard_errors in zip(batch["shard"], batch["line"], batch["shard_errors"]):
                shard = int(shard)
                pending.setdefault(shard, []).append(str(line))
                errors[shard] = int(shard_errors)
                if len(pending[shard]) == counts[shard]:
                    yield ShardResult(shard, pending.pop(shard), errors.pop(shard))
        if pending:
            raise RuntimeError(f"Ray returned incomplete shards: {sorted(pending)}")
    finally:
        if started:
            ray.shutdown()
