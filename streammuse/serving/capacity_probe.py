"""T(B), the time of one batched request step of B sessions through a replica's own app,
measured on this host: what :func:`~streammuse.serving.capacity.sessions_for` sizes a
replica by. The app is handed in (``make_app``), so this module sits below the app that
calls it from every replica's ``__init__``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from streammuse.core.drivers import RealtimeDriver
from streammuse.core.sessions import CoreOptions, SessionCore
from streammuse.serving.capacity import Plan


def _wire_melody(first: int, ticks: int) -> list:
    """Melody frames for ticks ``first .. first + ticks - 1`` on the wire (one note each)."""
    return [[[60 + (t * 5) % 12, 1]] for t in range(first, first + ticks)]


def measure_step_ms(engine, plan: Plan, sizes: list[int], make_app: Callable, history: int | None = None,
                    repeats: int = 3) -> dict[int, float]:
    """T(B) in ms (median of ``repeats`` after one warm-up) for each B in ``sizes``, in
    order: B sessions, warmed with ``history`` ticks, each send their request for the
    same tick through the replica's own app (``make_app``, the serving layer's
    ``create_app``, over a ``RealtimeDriver``:
    request parsing and validation, the session core and batcher, the engine, the JSON
    answer), and T(B) is the time until the last of the B answers. Only the HTTP hop in
    front of the app (Ray's proxy, uvicorn) is left out. Stops after the first B over the
    plan's budget (larger batches only take longer). ``history`` None: the model's
    ``steady_context_ticks`` (a step on a short fresh context is cheaper than a minute
    into a song)."""
    # A loop of its own, in a thread: the caller may be inside a running loop (a replica).
    with ThreadPoolExecutor(1) as pool:
        history = engine.config.steady_context_ticks if history is None else history
        return pool.submit(asyncio.run, _measure_through_app(engine, plan, sizes, make_app, history, repeats)).result()


async def _measure_through_app(engine, plan: Plan, sizes: list[int], make_app: Callable, history: int,
                               repeats: int) -> dict[int, float]:
    # It times compute: no musician waits on these requests, so none is dropped as expired.
    core = SessionCore(engine, CoreOptions(max_sessions=max(sizes), max_batch_size=max(sizes), max_sessions_per_client=0,
                                           drop_expired=False))
    table: dict[int, float] = {}
    transport = httpx.ASGITransport(app=make_app(RealtimeDriver(core)))
    async with httpx.AsyncClient(transport=transport, base_url="http://replica", timeout=600.0) as http:

        async def ask(sid: str, s: int, ticks: int, gen_len: int) -> None:
            body = {"request_tick": s, "gen_len": gen_len, "melody": _wire_melody(s - ticks, ticks), "melody_start": s - ticks}
            r = await http.post(f"/v1/sessions/{sid}/infer", json=body)
            if r.status_code != 200 or r.json()["status"] != "ok":
                raise RuntimeError(f"capacity probe: {r.status_code} {r.text[:200]}")

        for b in sizes:
            sids = [(await http.post("/v1/sessions", json={"seed": k, "bpm": plan.bpm})).json()["session_id"]
                    for k in range(b)]
            await asyncio.gather(*(ask(sid, history, history, 1) for sid in sids))
            times = []
            for r in range(repeats + 1):
                s = history + (r + 1) * plan.interval
                started = time.perf_counter()
                await asyncio.gather(*(ask(sid, s, plan.interval, plan.gen_len) for sid in sids))
                times.append((time.perf_counter() - started) * 1000)
            for sid in sids:
                await http.delete(f"/v1/sessions/{sid}")
            table[b] = float(np.median(times[1:]))
            if table[b] > plan.budget_ms:
                break
    return table
