"""How many sessions a running deployment carries in real time through its whole HTTP
path: Ray's proxy, the replica's app, the engine, and clients on the same host.

``serving/capacity.py`` sizes a replica from T(B) measured through its own app, which
leaves out what each request costs in front of the app (Ray's proxy, the HTTP hop) and
what the clients cost on a host they share. On the 2-core dev machine that gap is most of
the cost: the app-path figure was 15 sessions at I = 1, GL = 3, and 15 admitted sessions
played 0 % of their ticks (README, overload). So once the deployment is up, ``serve``
offers it real sessions (:func:`offer`) and keeps the largest count whose every session
plays at least ``MIN_TICK_SHARE`` of its ticks (:func:`sessions_through_path`).

A session here enters with the history of a session a minute into a song (sent as a
re-sent context: a step on a long context costs more than on a fresh session's short
one; measured: 3 sessions played every tick for 5 s fresh and 71 % over 20 s): between
the model's ``steady_context_ticks`` and its ``window_ticks`` (``GET /v1/model``),
staggered over the sessions, so that each session's window slides (a costly rebuild of
its cache, every W/8 ticks) once during the offer and at its own moment, as in sessions
that started at different times. Then it is the paper's client reduced to its timing:
one request per I ticks, sent at the onset of tick s-1 without waiting for earlier
answers (the server supersedes stale ones), carrying the newest melody frames; tick t
counts as *played* when an answer covering it (s .. s+GL-1) arrived before its onset.
``bench/overload.py`` offers its sessions through the same :func:`offer`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx
import numpy as np

from streammuse.contract import tau_ms
from streammuse.core.deadlines import answer_deadline_ms

MIN_TICK_SHARE = 0.99  # every admitted session must play this share of its ticks
# Ticks of the probe's first second are not judged: a session's first requests pay for its
# state (over a song one cold tick is noise; in an 11 s probe it is 1 %). Each count is
# then offered until every session's window has slid once (module docstring), plus a bar.
WARMUP_S = 1.0
MARGIN_TICKS = 16


@dataclass
class ProbeSession:
    """One offered session's timeline and what came back."""

    sid: str
    interval: int
    gen_len: int
    tau_s: float
    waits_ms: list[float] = field(default_factory=list)
    wait_ticks: list[int] = field(default_factory=list)  # the request tick s of each wait
    covered: set[int] = field(default_factory=set)
    refused_ms: float | None = None  # latency of the first 503 / 429
    statuses: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    context_ticks: int = 0  # H: the session enters with H ticks of history (song tick H + t is probe tick t)

    @property
    def admitted(self) -> bool:
        """The replica took the session (any answer but a refusal)."""
        return bool(self.statuses.get("ok")) or self.refused_ms is None

    @property
    def tick_share(self) -> float:
        """Share of ticks 1 .. ticks an answer covered in time."""
        return self.share_from(1)

    def share_from(self, first: int) -> float:
        """Share of ticks ``first`` .. ticks an answer covered in time."""
        return len([t for t in self.covered if first <= t <= self.ticks]) / max(1, self.ticks - first + 1)

    async def _post(self, http: httpx.AsyncClient, body: dict) -> tuple[str | None, float]:
        """One infer request: (its status, or None when refused or failed; when it came back)."""
        sent = time.perf_counter()
        try:
            r = await http.post(f"/v1/sessions/{self.sid}/infer", json=body, headers={"x-session-id": self.sid})
        except httpx.HTTPError:
            self.statuses["failed"] = self.statuses.get("failed", 0) + 1
            return None, time.perf_counter()
        arrived = time.perf_counter()
        status = r.json().get("status") if r.status_code == 200 else f"{r.status_code} {_code(r)}"
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if r.status_code in (429, 503):
            self.refused_ms = self.refused_ms if self.refused_ms is not None else (arrived - sent) * 1000
            return None, arrived
        self.waits_ms.append((arrived - sent) * 1000)
        return status, arrived

    async def enter(self, http: httpx.AsyncClient) -> None:
        """Send the session's H ticks of history (a context, as a client re-sends it) and
        wait for the answer: the timed requests then run at the full context window, as
        a minute into a song, not on a short fresh context (cheaper per step)."""
        h = self.context_ticks
        if h > 0 and self.sid:
            context = {"melody": [[[60 + t % 12, 1]] for t in range(h)],
                       "accompaniment": [[[48 + t % 12, 2], [55 + t % 12, 2]] for t in range(h)]}
            await self._post(http, {"request_tick": h, "gen_len": 1, "context": context})
            self.waits_ms.clear()  # the rebuild is not a timed request
            self.wait_ticks.clear()

    async def _one(self, http: httpx.AsyncClient, s: int, start: float) -> None:
        h, first = self.context_ticks, max(0, s - self.interval)
        body = {"request_tick": h + s, "gen_len": self.gen_len, "melody_start": h + first,
                "melody": [[[60 + (h + t) % 12, 1]] for t in range(first, s)]}
        status, arrived = await self._post(http, body)
        if status is not None:
            self.wait_ticks.append(s)
        if status == "ok":  # tick t starts at start + t tau: played if the answer came before
            self.covered.update(t for t in range(s, s + self.gen_len) if arrived <= start + t * self.tau_s)

    async def run(self, http: httpx.AsyncClient, start: float, seconds: float) -> None:
        """Send request s at the onset of tick s-1 for ``seconds``; wait for every answer."""
        self.ticks, tasks = int(seconds / self.tau_s), []
        if not self.sid:
            return  # refused at create
        for s in range(1, self.ticks + 1, self.interval):
            await asyncio.sleep(max(0.0, start + (s - 1) * self.tau_s - time.perf_counter()))
            if self.refused_ms is not None and not self.statuses.get("ok"):
                break  # refused: this session never started
            tasks.append(asyncio.create_task(self._one(http, s, start)))
        await asyncio.gather(*tasks)


def _code(response: httpx.Response) -> str:
    """The error body's ``code`` (ours), else ``-`` (e.g. Ray's proxy refusing on its own)."""
    try:
        return str(response.json().get("code", "-"))
    except ValueError:
        return "-"


def _client(url: str, timeout_s: float, token: str | None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if url.startswith("unix://"):
        transport = httpx.AsyncHTTPTransport(uds=url[len("unix://"):], limits=limits)
        return httpx.AsyncClient(transport=transport, base_url="http://local", timeout=timeout_s, headers=headers)
    return httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits, headers=headers)


def offer(url: str, n: int, seconds: float, bpm: float = 120.0, interval: int = 1, gen_len: int = 3,
          token: str | None = None, timeout_s: float = 30.0, context_ticks: int | None = None) -> list[ProbeSession]:
    """Open ``n`` sessions at once at ``url`` (``http://`` or ``unix://``), give each
    ``context_ticks`` of history (None: staggered histories of sessions a minute into a
    song, module docstring), then play them for ``seconds``; each session is closed
    afterwards."""

    async def go() -> list[ProbeSession]:
        async with _client(url, timeout_s, token) as http:
            if context_ticks is None:
                info = (await http.get("/v1/model")).json()
                low, high = info["context_ticks"], info["window_ticks"]
                histories = [low + k * (high - low) // n for k in range(n)]
            else:
                histories = [context_ticks] * n
            sessions = [await _create(http, k, bpm, interval, gen_len, h) for k, h in enumerate(histories)]
            await asyncio.gather(*(p.enter(http) for p in sessions))
            start = time.perf_counter() + 0.5
            await asyncio.gather(*(p.run(http, start, seconds) for p in sessions))
            for p in sessions:
                if p.sid:
                    await http.delete(f"/v1/sessions/{p.sid}", headers={"x-session-id": p.sid})
            return sessions

    return asyncio.run(go())


async def _create(http: httpx.AsyncClient, seed: int, bpm: float, interval: int, gen_len: int,
                  history: int) -> ProbeSession:
    """Open one offered session; a full replica refuses it here, at create (429 / 503:
    a session with no id, its refusal latency kept); any other answer is a bug."""
    sent = time.perf_counter()
    r = await http.post("/v1/sessions", json={"seed": seed, "bpm": bpm})
    probe = ProbeSession("", interval, gen_len, tau_ms(bpm) / 1000, context_ticks=history)
    if r.status_code in (429, 503):
        probe.refused_ms = (time.perf_counter() - sent) * 1000
        probe.statuses[f"{r.status_code} {_code(r)}"] = 1
        return probe
    r.raise_for_status()
    probe.sid = r.json()["session_id"]
    return probe


def plays_in_real_time(sessions: list[ProbeSession], first_tick: int = 1) -> bool:
    """Every admitted session played at least ``MIN_TICK_SHARE`` of its ticks from ``first_tick`` on."""
    admitted = [p for p in sessions if p.admitted]
    return bool(admitted) and min(p.share_from(first_tick) for p in admitted) >= MIN_TICK_SHARE


def sessions_through_path(fits: Callable[[int], bool], upper: int) -> tuple[int, dict[int, bool]]:
    """The largest n in 1..``upper`` with ``fits(n)`` (offered n sessions, every one plays in
    real time), by bisection from ``upper`` down, assuming more sessions never fit better;
    1 when even one does not (a replica always admits one). Returns (n, what was tried)."""
    tried = {upper: fits(upper)}
    if tried[upper]:
        return upper, tried
    good, bad = 0, upper
    while bad - good > 1:
        mid = (good + bad) // 2
        tried[mid] = fits(mid)
        good, bad = (mid, bad) if tried[mid] else (good, mid)
    return max(1, good), tried


def probe_seconds(url: str, bpm: float, token: str | None = None) -> float:
    """How long each count is offered: the warm-up, then until every session's window
    has slid once (``window_ticks - context_ticks`` ticks), plus ``MARGIN_TICKS``."""

    async def info() -> dict:
        async with _client(url, 10.0, token) as http:
            return (await http.get("/v1/model")).json()

    model = asyncio.run(info())
    return WARMUP_S + (model["window_ticks"] - model["context_ticks"] + MARGIN_TICKS) * tau_ms(bpm) / 1000


def size_through_path(url: str, plan, upper: int, on_try: Callable[[int, dict], None] | None = None,
                      token: str | None = None, seconds: float | None = None) -> int:
    """The sessions a running deployment carries in real time at ``plan``
    (``capacity.Plan``): :func:`sessions_through_path` over :func:`offer`, at most
    ``upper`` (the app-path figure), each count offered ``seconds`` (None:
    :func:`probe_seconds`). ``on_try(n, summary)`` is told each count's figures."""
    deadline_s = answer_deadline_ms(plan.gen_len, plan.bpm) / 1000
    seconds = probe_seconds(url, plan.bpm, token) if seconds is None else seconds

    def fits(n: int) -> bool:
        sessions = offer(url, n, seconds, plan.bpm, plan.interval, plan.gen_len, token=token,
                         timeout_s=2 * deadline_s + 2.0)  # later answers play nothing anyway
        first_tick = 1 + int(WARMUP_S * 1000 / tau_ms(plan.bpm))
        if on_try is not None:
            on_try(n, summary(sessions, first_tick))
        _drain(url, token)
        return plays_in_real_time(sessions, first_tick)

    return sessions_through_path(fits, upper)[0]


def _drain(url: str, token: str | None, quiet_ms: float = 200.0, timeout_s: float = 60.0) -> None:
    """Wait until an overloaded deployment has worked off what it was sent: its health
    check (queued behind everything else) answers within ``quiet_ms``."""

    async def go() -> None:
        async with _client(url, 5.0, token) as http:
            give_up = time.monotonic() + timeout_s
            while time.monotonic() < give_up:
                started = time.perf_counter()
                try:
                    if (await http.get("/healthz")).status_code == 200 and (time.perf_counter() - started) * 1000 < quiet_ms:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)

    asyncio.run(go())


def summary(sessions: list[ProbeSession], first_tick: int = 1) -> dict:
    """Figures of one offer: admitted / refused, tick shares and waits (both from
    ``first_tick`` on), refusal latency, answers by status."""
    admitted = [p for p in sessions if p.admitted]
    refused = [p for p in sessions if not p.admitted]
    shares = [p.share_from(first_tick) for p in admitted]
    waits = np.array([w for p in admitted for w, s in zip(p.waits_ms, p.wait_ticks) if s >= first_tick] or [0.0])
    statuses: dict[str, int] = {}
    for p in admitted:
        for k, v in p.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    return {"offered": len(sessions), "admitted": len(admitted), "refused": len(refused),
            "tick_share_min": round(min(shares), 4) if shares else None,
            "tick_share_median": round(float(np.median(shares)), 4) if shares else None,
            "wait_max_ms": round(float(waits.max()), 1), "wait_p95_ms": round(float(np.percentile(waits, 95)), 1),
            "refusal_max_ms": round(max(p.refused_ms for p in refused), 1) if refused else None,
            "statuses": statuses}
