"""Drivers of the session core: where time comes from, nothing else.

All three call :class:`~streammuse.core.sessions.SessionCore` in the same order
(``submit``, ``next_batch_at``, ``take_batch``, ``compute``, ``finish``), so the rules a
simulation plays by are the rules the server plays by.

* :class:`RealtimeDriver`: the server's. Time is ``time.monotonic``; the engine runs in a
  worker thread while the event loop keeps accepting requests. With an engine that steps
  (``begin`` / ``step``) it batches continuously (``stepping.py``): requests join between
  frame steps and each is answered when its own GL is done; else one batch at a time.
* :class:`VirtualDriver`: the sim clock's. Time is what the simulation says; a batch
  lasts ``server_ms(batch)``: its measured compute time, or a draw from a profile's
  measured server model. Many virtual replicas over one engine may share a
  :class:`DeferredCompute`: each batch's engine work is put off until the first of their
  batches ends, and then every waiting batch runs in one engine call.
* :func:`run_now`: one request served at once in the calling thread (the in-process
  transport, the profiler's engine mode).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from streammuse.contract import (
    ApiError,
    CreateSessionRequest,
    CreateSessionResponse,
    InferRequest,
    InferResponse,
)
from streammuse.core.sessions import Batch, Job, SessionCore
from streammuse.core.stepping import StepRun, stepwise


class _Driver:
    """What the HTTP app needs from a driver: ``create``, ``infer``, ``close``, ``engine``."""

    core: SessionCore

    @property
    def engine(self):
        """The engine behind the core."""
        return self.core.engine

    def now_s(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def create(self, request: CreateSessionRequest, client: str | None = None) -> CreateSessionResponse:
        """Open a session, admitted now (``client``: who asks, core/admission.py); raises ApiError."""
        return self.core.create(request, self.now_s(), client)

    def close(self, session_id: str, client: str | None = None) -> None:
        """Close a session (``client``: who asks, core/admission.py)."""
        self.core.close(session_id, client)

    def _submit(self, session_id: str, request: InferRequest, client: str | None) -> tuple[Job, asyncio.Future | None]:
        job = self.core.submit(session_id, request, self.now_s(), client)
        if job.done:
            return job, None
        future = asyncio.get_running_loop().create_future()

        def wake(done: Job) -> None:
            if not future.done():
                future.set_result(done)

        job.on_done = wake
        return job, future

    @staticmethod
    def _result(job: Job) -> InferResponse:
        if job.error is not None:
            raise job.error
        return job.response


class RealtimeDriver(_Driver):
    """The core on the running asyncio loop, its engine work in a worker thread: one frame
    step at a time with requests joining between steps (an engine that steps), else one
    whole batch at a time."""

    def __init__(self, core: SessionCore, clock: Callable[[], float] = time.monotonic) -> None:
        self.core, self.clock = core, clock
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.steps = StepRun(core) if stepwise(core.engine) else None

    def now_s(self) -> float:
        """Now, on the driver's clock."""
        return self.clock()

    async def infer(self, session_id: str, request: InferRequest, client: str | None = None) -> InferResponse:
        """Accompaniment for ticks s .. s+GL-1 (or ``superseded``); raises ApiError.
        ``client``: who asks (core/admission.py's per-client bounds)."""
        job, future = self._submit(session_id, request, client)
        if future is None:
            return self._result(job)
        self._ensure_worker()
        self._wake.set()
        await future
        return self._result(job)

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            if self.steps is not None and self.steps.running:
                await self._step(self.steps.admit(self.now_s()))
                continue
            start_at = self.core.next_batch_at(self.now_s())
            if start_at is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = start_at - self.now_s()
            if delay > 0:
                self._wake.clear()
                # A request that fills the batch wakes the loop early.
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                continue
            if self.steps is not None:
                await self._step(self.steps.admit(self.now_s()))
                continue
            batch = self.core.take_batch(self.now_s())
            try:
                if batch.jobs:
                    await asyncio.to_thread(self.core.compute, batch)
                self.core.finish(batch, self.now_s())
            except Exception as exc:  # noqa: BLE001 - our bug, but no request may hang on it
                self.core.busy = False
                for job in batch.jobs:
                    self.core.in_flight.discard(id(job.session))
                    job.answer(error=ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}"))

    async def _step(self, batch: Batch | None) -> None:
        """Admit ``batch`` and run one frame step of everything running (worker thread),
        then answer what is done."""
        try:
            await asyncio.to_thread(self.steps.advance, batch)
            self.steps.settle(self.now_s())
        except Exception as exc:  # noqa: BLE001 - our bug, but no request may hang on it
            error = ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")
            self.steps.fail_all(error)
            for job in batch.jobs if batch is not None else []:
                self.core.in_flight.discard(id(job.session))
                job.answer(error=error)


class VirtualDriver(_Driver):
    """The core on a virtual clock the simulation advances.

    Args:
        core: the session core.
        server_ms: how long a batch takes, in virtual ms, given the batch after its
            compute ran (``lambda b: b.compute_ms`` for the measured compute time).
        deferred: shared by replicas over one engine, it runs their batches' engine work
            together, when the first of them ends. ``server_ms`` is then called *before*
            the compute, so it must not read it (a modelled time, never ``compute_ms``).
    """

    def __init__(self, core: SessionCore, server_ms: Callable[[Batch], float],
                 deferred: DeferredCompute | None = None) -> None:
        self.core, self.server_ms, self.deferred = core, server_ms, deferred
        self.virtual_s = 0.0
        self.running: Batch | None = None
        self.ends_s = 0.0

    def now_s(self) -> float:
        """Now, in virtual seconds."""
        return self.virtual_s

    async def infer(self, session_id: str, request: InferRequest, client: str | None = None) -> InferResponse:
        """As the server's, but answered when the simulation reaches the batch's end."""
        job, future = self._submit(session_id, request, client)
        if future is not None:
            await future
        return self._result(job)

    def next_event_s(self) -> float | None:
        """When the replica next does something (a batch starts or ends), or None."""
        if self.running is not None:
            return self.ends_s
        return self.core.next_batch_at(self.virtual_s)

    def advance(self, now_s: float) -> None:
        """Move the clock to ``now_s`` and do what is due then (end a batch, start one)."""
        self.virtual_s = now_s
        if self.running is not None and now_s >= self.ends_s:
            batch, self.running = self.running, None
            if self.deferred is not None:
                self.deferred.run()  # this batch's answers are due: compute it (and the others)
            self.core.finish(batch, now_s, batch.server_ms)
        start_at = self.core.next_batch_at(now_s)
        if self.running is None and start_at is not None and start_at <= now_s:
            batch = self.core.take_batch(now_s)
            if batch.jobs and self.deferred is not None:
                self.deferred.add(self.core, batch)
            elif batch.jobs:
                self.core.compute(batch)
            batch.server_ms = float(self.server_ms(batch)) if batch.jobs else 0.0
            self.running, self.ends_s = batch, now_s + batch.server_ms / 1000.0


class DeferredCompute:
    """The engine work of many virtual replicas' batches, run in one engine call.

    A batch's inputs are frozen when it is taken (``take_batch``) and only the engine
    states of its own sessions change when it runs, and a replica has at most one batch
    out; so a batch may run at any time between its start and its end. The replicas
    :meth:`add` their batches as they start them, and the first replica whose batch ends
    calls :meth:`run`: every waiting batch of every replica in one ``infer_batch``. The
    replicas must share one engine and their sessions must differ (one song per replica).
    Each engine session's tokens are those of the unbatched run as far as the engine's
    batches are (``tests/test_model_batched.py``; a float kernel may round a batch of B
    rows differently from one row, docs/client.md).
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[SessionCore, Batch]] = []
        self.sizes: list[int] = []  # jobs per engine call made (bench, tests)

    def add(self, core: SessionCore, batch: Batch) -> None:
        """Queue ``batch`` (just taken by ``core``) for the next engine call."""
        if self.waiting and core.engine is not self.waiting[0][0].engine:
            raise ValueError("DeferredCompute: every replica must share one engine")
        self.waiting.append((core, batch))

    def run(self) -> None:
        """Compute every waiting batch in one engine call (its rebuilds first, a bad
        request failing alone, as ``SessionCore.compute``); each gets its results and
        its share of the measured compute time."""
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        batches = [b for _, b in waiting]
        merged = Batch([j for b in batches for j in b.jobs], [i for b in batches for i in b.items],
                       [c for b in batches for c in b.contexts], min(b.started_s for b in batches))
        waiting[0][0].compute(merged)
        self.sizes.append(len(merged.jobs))
        at = 0
        for batch in batches:
            n = len(batch.jobs)
            batch.results = merged.results[at : at + n]
            batch.compute_ms = merged.compute_ms * n / len(merged.jobs)
            at += n


def run_now(core: SessionCore, session_id: str, request: InferRequest,
            clock: Callable[[], float] = time.monotonic) -> InferResponse:
    """Serve one request at once in this thread, by the core's rules (no batching window).

    Raises:
        ApiError: as the server would answer it.
    """
    job = core.submit(session_id, request, clock())
    while not job.done:
        batch = core.take_batch(clock())
        core.compute(batch)
        core.finish(batch, clock())
    if job.error is not None:
        raise job.error
    return job.response


__all__ = ["DeferredCompute", "RealtimeDriver", "VirtualDriver", "run_now", "ApiError"]
