"""Continuous batching for the real-time driver (issue 14): requests join and leave the
engine between frame steps.

A whole batch (``SessionCore.compute``) runs every request to its full GL, so a GL = 3
request that arrives while a GL = 16 one runs waits for all 16 ticks. Here the engine is
driven one tick at a time (``engine.begin`` / ``engine.step``): before every step the
requests that arrived meanwhile are admitted (``SessionCore.take_batch``, so superseding,
carried contexts, rebuilds and releases follow the same rules), and a request is answered
as soon as its own GL frames are generated. A session's tokens are the same whether it
ran alone or joined a running batch midway.

Only the engine's calls run in the worker thread (:meth:`StepRun.advance`); admitting and
answering run on the driver's thread (:meth:`StepRun.admit`, :meth:`StepRun.settle`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from streammuse.contract import ApiError
from streammuse.core.sessions import Batch, Job, SessionCore


@dataclass
class Running:
    """One request inside the engine."""

    job: Job
    gen: object  # the engine's GenJob, or the ApiError that ended it
    started_s: float  # when its batch was taken (queue_ms ends here)
    compute_ms: float = 0.0  # engine time of the calls it took part in


def stepwise(engine) -> bool:
    """True when the engine can run requests one tick at a time."""
    return callable(getattr(engine, "begin", None)) and callable(getattr(engine, "step", None))


class StepRun:
    """The requests running in one core's engine, advanced one tick per :meth:`advance`."""

    def __init__(self, core: SessionCore) -> None:
        self.core = core
        self.running: list[Running] = []
        self.steps = 0  # engine steps run so far (tests, benchmarks)

    def admit(self, now_s: float) -> Batch | None:
        """The waiting requests that may join before the next step (None: none may)."""
        core = self.core
        if len(core.in_flight) >= core.options.max_batch_size:
            return None  # full: they wait for a running request to end
        if not any(id(job.session) not in core.in_flight for job in core.pending):
            return None
        batch = core.take_batch(now_s)
        core.batch_sizes.append(len(batch.jobs))
        return batch

    def advance(self, batch: Batch | None) -> None:
        """Begin ``batch`` (its rebuilds first), then one engine step for every running
        request; any thread. An exception fails the requests it touched, never escapes."""
        if batch is not None and batch.jobs:
            self.core.compute(batch, run=self.core.engine.begin)
            self.running += [Running(job, gen, batch.started_s, batch.compute_ms)
                             for job, gen in zip(batch.jobs, batch.results)]
        live = [r for r in self.running if not isinstance(r.gen, ApiError)]
        if not live:
            return
        started = time.perf_counter()
        try:
            self.core.engine.step([r.gen for r in live])
        except Exception as exc:  # noqa: BLE001 - every running request must be answered
            error = ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")
            for r in live:
                r.gen = error
        took = (time.perf_counter() - started) * 1000
        for r in live:
            r.compute_ms += took
        self.steps += 1

    def settle(self, now_s: float) -> None:
        """Answer the requests that are done (or failed); on the driver's thread."""
        keep = []
        for r in self.running:
            if isinstance(r.gen, ApiError):
                self.core.answer_job(r.job, r.gen, r.started_s, r.compute_ms)
            elif r.gen.done:
                self.core.answer_job(r.job, r.gen.result(), r.started_s, r.compute_ms)
            else:
                keep.append(r)
        self.running = keep
        if not keep:
            self.core.busy = False
            self.core.idle_since_s = now_s

    def fail_all(self, error: ApiError) -> None:
        """Answer every running request with ``error`` (a bug in the driver's loop)."""
        for r in self.running:
            self.core.in_flight.discard(id(r.job.session))
            r.job.answer(error=error)
        self.running = []
        self.core.busy = False
