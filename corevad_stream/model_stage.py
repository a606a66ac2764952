"""The model stage: batches from the batcher through the model worker, results to each camera's queue.

Two loops joined by a one-batch queue: prepare forms the next batch and runs the backend's CPU
preprocessing on its own thread while the model call of the last batch runs on another, so the GPU does
not wait for the CPU and at most one batch waits prepared. The stage owns what the model as a whole is:
its threads, the time the current batch has been in the model (the watchdog's question) and the global
model health, published retained on <prefix>/model. A batch that raises never stops the stage: its
segments count as dropped. End-of-stream markers keep their place behind their camera's segments.

Two-phase delivery (describe on_demand with a backend that splits, e.g. the transformers backend's KV-cache
continuation): the model call of a batch ends after its verdicts; every segment's result goes to scoring
then, and the description pass for the rows that need one runs next, on the same model thread, before the
next batch. Each description then goes to its camera as a DescriptionUpdate (the alert's explanation). Why
the scores do not wait: on an H200 the 24 answer tokens of a batch took 2.22 s against 1.35 s for its
prefill and first token (issue 21), and most segments need no description at all. A segment whose verdict
one token could not tell waits for its answer, and so do the segments of its camera behind it in the batch
(scoring takes a camera's segments in order). End markers of a split batch go last, behind its descriptions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from corevad.threads import DaemonPool

from .entities import DescriptionPass, DescriptionUpdate, PreparedBatch, SegmentJob, SegmentResult
from .health import HealthChange, ModelHealth, ModelState
from .messages import Message
from .redact import redact

log = logging.getLogger(__name__)

_Ready = asyncio.Queue[tuple[list[SegmentJob], PreparedBatch | None] | None]


class BatchSource(Protocol):
    """What the stage takes batches from (batcher.Batcher)."""

    async def next_batch(self) -> list[SegmentJob]: ...

    def pending(self, camera: str | None = None) -> int: ...


class Runner(Protocol):
    """What the stage runs batches with (worker.ModelWorker): blocking calls, made on the stage's threads."""

    backend: Any
    batches: int
    errors: int

    def prepare(self, batch: list[SegmentJob]) -> PreparedBatch: ...

    def verdicts(self, pb: PreparedBatch) -> tuple[list[SegmentResult | None], DescriptionPass | None]: ...

    def describe(self, dp: DescriptionPass) -> tuple[list[SegmentResult], list[DescriptionUpdate]]: ...


class ModelStage:
    """Run with `await stage.run()` (returns once the batcher is closed and drained); close() ends its threads.

    deliver: puts a result, a description or an end marker on its camera's queue (awaited: a full queue holds the model
    back, bounded by the camera's results bound). on_drop: a segment lost to a failed batch.
    health: the model's global health (this stage reports to it; the page and metrics read it).
    publish: the global model state changes. observe_model_s: seconds per batch (metrics).
    """

    def __init__(self, *, runner: Runner, batches: BatchSource, health: ModelHealth, overlap: bool,
                 deliver: Callable[[SegmentResult | SegmentJob | DescriptionUpdate], Awaitable[None]],
                 on_drop: Callable[[SegmentJob, str], None], publish: Callable[[Message], None],
                 observe_model_s: Callable[[float], None] | None = None) -> None:
        self.runner = runner
        self.batches = batches
        self.health = health
        self.overlap = overlap
        self._deliver = deliver
        self._on_drop = on_drop
        self._publish = publish
        self._observe = observe_model_s
        # Daemon threads: a model call that hangs must not keep the process alive after shutdown.
        self._model_pool = DaemonPool(1, name="corevad[worker].model")
        self._prep_pool = DaemonPool(1, name="corevad[worker].prepare")
        self._inflight_since: float | None = None  # monotonic start of the batch in the model, if any

    def close(self) -> None:
        for pool in (self._model_pool, self._prep_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    # -- what the supervisor asks ----------------------------------------------------------------------
    def inflight_s(self, now: float | None = None) -> float | None:
        """How long the current batch has been in the model (None: none is)."""
        since = self._inflight_since
        return None if since is None else (time.monotonic() if now is None else now) - since

    def stalled(self, seconds: float) -> None:
        """The watchdog: a batch has been in the model this long without an outcome."""
        self._publish_health(self.health.stalled(seconds))

    def stats(self) -> dict[str, Any]:
        """The `model` part of <prefix>/stats."""
        backend = self.runner.backend
        replicas = getattr(backend, "endpoint_stats", None)  # the openai backend's replicas
        endpoints = {"endpoints": [{**e, "url": redact(e["url"])} for e in replicas()]} if replicas else {}
        # Answers the backend bounded (issue 18 item 11): cut at max_answer_chars, or refused unread because the
        # response was over max_response_bytes. A backend without the bounds reports neither.
        bounded = {k: v for k in ("answers_cut", "answers_refused") if isinstance(v := getattr(backend, k, None), int)}
        # Two-phase delivery: descriptions delivered after their verdicts, and those a failed pass cost.
        split = ({k: getattr(self.runner, k, 0) for k in ("descriptions", "descriptions_failed")}
                 if getattr(self.runner, "two_phase", False) else {})
        return {"backend": getattr(backend, "name", "?"), "batches": self.runner.batches,
                "errors": self.runner.errors, "pending": self.batches.pending(), **self.health.snapshot(),
                **bounded, **split, **endpoints}

    def announce(self) -> None:
        """Publish the current (retained) model state, e.g. at start."""
        self._publish(Message("model", self.health.record(), retain=True))

    # -- the loops -------------------------------------------------------------------------------------
    async def run(self) -> None:
        ready: _Ready = asyncio.Queue(maxsize=1)
        prep = asyncio.create_task(self._prepare_loop(ready), name="corevad[worker].prepare")
        try:
            await self._model_loop(ready)
        finally:
            prep.cancel()

    async def _prepare_loop(self, ready: _Ready) -> None:
        """Stage 1: form the next batch and preprocess it on its own thread while the model runs the last one."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.batches.next_batch()
            if not batch:
                await ready.put(None)
                return
            jobs = [j for j in batch if not j.end_of_stream]
            prepared: PreparedBatch | None = None
            if jobs and self.overlap:  # else the model step does both (infer)
                prepared = await loop.run_in_executor(self._prep_pool, self.runner.prepare, jobs)
            await ready.put((batch, prepared))

    async def _model_loop(self, ready: _Ready) -> None:
        """Stage 2: the model (phase one, its results out, then phase two where the batch split)."""
        while True:
            item = await ready.get()
            if item is None:
                return
            batch, prepared = item
            jobs = [j for j in batch if not j.end_of_stream]
            results: list[SegmentResult | None] = []
            split: DescriptionPass | None = None
            if jobs:
                step = (functools.partial(self.runner.verdicts, prepared) if prepared is not None
                        else functools.partial(self._verdicts_unprepared, jobs))
                try:
                    results, split = await self._in_model(step)
                except Exception:  # noqa: BLE001 - never lose the stage; the segments count as dropped
                    log.exception("model worker failed on a batch of %d", len(jobs))
                    for lost in jobs:
                        lost.release()
                        self._on_drop(lost, "worker error")
                    results, split = [], None
                if known := [r for r in results if r is not None]:
                    self._outcome(known)
            if split is None:
                pending = iter(results)
                for job in batch:  # markers keep their place behind their camera's segments
                    if job.end_of_stream:
                        await self._deliver(job)
                    else:
                        r = next(pending, None)
                        if r is not None:
                            await self._deliver(r)
                continue
            await self._deliver_split(batch, jobs, results, split)

    def _verdicts_unprepared(self, jobs: list[SegmentJob]) -> tuple[list[SegmentResult | None], DescriptionPass | None]:
        return self.runner.verdicts(self.runner.prepare(jobs))

    async def _in_model(self, step: Callable[[], Any]) -> Any:
        """One blocking model call on the model thread, shown to the watchdog as in flight."""
        self._inflight_since = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._model_pool, step)
        finally:
            self._inflight_since = None

    async def _deliver_split(self, batch: list[SegmentJob], jobs: list[SegmentJob],
                             results: list[SegmentResult | None], split: DescriptionPass) -> None:
        """A batch that split: its verdicts out now (per camera up to a segment whose verdict waits for its
        answer), then the description pass, then the rest of its results, the descriptions and the end markers."""
        waiting: set[str] = set()  # cameras with a segment whose verdict is not out yet
        later: list[tuple[SegmentJob, SegmentResult | None]] = []
        for job, r in zip(jobs, results, strict=True):
            if r is None or job.camera in waiting:
                waiting.add(job.camera)
                later.append((job, r))
            else:
                await self._deliver(r)
        held: list[SegmentResult] = []
        updates: list[DescriptionUpdate] = []
        try:
            held, updates = await self._in_model(functools.partial(self.runner.describe, split))
        except Exception:  # noqa: BLE001 - only this pass is lost: its held segments count as dropped
            log.exception("description pass failed on a batch of %d", len(jobs))
        if held and not any(r is not None for r in results):
            self._outcome(held)
        by_index = {(r.job.camera, r.job.index): r for r in held}
        for job, r in later:
            r = r if r is not None else by_index.get((job.camera, job.index))
            if r is None:
                self._on_drop(job, "description pass error")
            else:
                await self._deliver(r)
        for u in updates:
            await self._deliver(u)
        for job in batch:
            if job.end_of_stream:
                await self._deliver(job)

    def _outcome(self, results: list[SegmentResult]) -> None:
        if self._observe is not None:
            self._observe(results[0].model_s)
        if any(r.answered for r in results):
            self._publish_health(self.health.success())
        else:
            r0 = results[0]
            self._publish_health(self.health.failure(r0.error_kind or "error", r0.error or ""))

    def _publish_health(self, change: HealthChange | None) -> None:
        if change is None:
            return
        level = logging.WARNING if change.state is not ModelState.OK else logging.INFO
        log.log(level, "model %s%s", change.state.value, f" ({change.reason})" if change.reason else "")
        self.announce()
