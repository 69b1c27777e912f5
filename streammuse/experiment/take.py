"""A jam take: what the browser page (``streammuse jam``) played, as a run folder.

The page runs the client's rules in JavaScript (``streammuse/serving/jam/client.js``)
and, when the musician stops, sends its whole log here as one :class:`Take`: the melody
as played, every request (when it left, when its answer arrived, what it answered) and,
per tick, which request's frame it played. :func:`write_take` turns that into the run
folder every replay writes (docs/design.md section 5, setting ``jam``), so ``evaluate``
and ``report`` read it like any other run.

The log is checked against the Python client's rules: :func:`rederive_played` replays
the request log through :class:`~streammuse.client.buffer.TickBuffer` (answers offered
at their arrival time, tick t closed at its onset t * tau, an answer at exactly the
onset late) and the manifest records on how many ticks the page disagreed.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streammuse.client.buffer import Played, TickBuffer
from streammuse.client.session import RequestRecord, TickRecord
from streammuse.datasets import vocab
from streammuse.datasets.song import Song, note_array
from streammuse.errors import StreamMuseError
from streammuse.contract import MAX_GEN_LEN, SamplingSettings, WireFrame, tau_ms

SETTING = "jam"
MAX_TAKE_TICKS = 1 << 14  # 17 minutes at 240 BPM; the 1 MiB body limit binds first (~250 B/tick: 9 min at 120 BPM)

Pitch = Annotated[int, Field(ge=vocab.MIN_PITCH, le=vocab.MAX_PITCH)]
PlayedNote = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=1)], Pitch]  # onset, duration, pitch


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TakeRequest(_Strict):
    """One request of the page's log (a ``requests.parquet`` row plus its answer).

    Times are ms on the page's audio clock from the onset of tick 0 (``recv_ms`` is None
    while unanswered). ``status`` follows :class:`~streammuse.client.session.RequestRecord`.
    """

    request_id: int = Field(ge=0)
    send_tick: int = Field(ge=-1)
    request_tick: int = Field(ge=0)
    gen_len: int = Field(ge=1, le=MAX_GEN_LEN)
    send_ms: float
    recv_ms: float | None = None
    status: Literal["ok", "late", "superseded", "expired", "failed"]
    inference_ms: float | None = None
    queue_ms: float | None = None
    accompaniment: list[WireFrame] = []


class TakeTick(_Strict):
    """What the page played at one tick: the request and the frame's index S(t) in it (-1: a miss)."""

    tick: int = Field(ge=0)
    request_id: int = Field(ge=-1)
    staleness: int = Field(ge=-1, le=MAX_GEN_LEN)


class Take(_Strict):
    """The body of ``POST /jam/takes``: one take as the page recorded it."""

    name: str = Field("take", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    bpm: float = Field(gt=0.0, le=400.0)
    interval: int = Field(ge=1, le=64)
    gen_len: int = Field(ge=1, le=MAX_GEN_LEN)
    seed: int = Field(0, ge=0)
    sampling: SamplingSettings = SamplingSettings()
    model_id: str = ""
    server: str = ""
    pair_source: str = "manual"  # "manual" or "planner"
    n_ticks: int = Field(ge=1, le=MAX_TAKE_TICKS)
    melody: list[PlayedNote] = []
    requests: list[TakeRequest] = []
    played: list[TakeTick]
    moved_notes: int = Field(0, ge=0)  # pressed after their tick's frame was sent: moved to the next tick
    dropped_notes: int = Field(0, ge=0)  # a fifth note in one tick (a frame holds 4)
    tick_lateness_ms: list[float] = []  # how late the page acted on each onset
    user_agent: str = ""


def rederive_played(take: Take) -> list[Played]:
    """The ticks as the Python client's buffer would have played them from the page's log.

    Events in time order: onset of tick t at ``t * tau`` (plays and closes slot t), an
    answer at its ``recv_ms`` (offered to the buffer); at equal times the onset first.
    """
    tau = tau_ms(take.bpm)
    buffer = TickBuffer(take.n_ticks)
    events = [(t * tau, 0, t, None) for t in range(take.n_ticks)]
    events += [(r.recv_ms, 1, r.request_id, r) for r in take.requests
               if r.status in ("ok", "late") and r.recv_ms is not None and math.isfinite(r.recv_ms)]
    heapq.heapify(events)
    played = []
    while events:
        _, kind, key, req = heapq.heappop(events)
        if kind == 0:
            played.append(buffer.play(key))
        else:
            buffer.offer(req.request_id, req.request_tick, req.accompaniment)
    return played


def check_take(take: Take) -> dict[int, TakeRequest]:
    """Structural checks (one StreamMuseError line each); returns the requests by id."""
    if len(take.played) != take.n_ticks or any(p.tick != t for t, p in enumerate(take.played)):
        raise StreamMuseError(f"take: played must list ticks 0 .. {take.n_ticks - 1} in order")
    by_id = {r.request_id: r for r in take.requests}
    if len(by_id) != len(take.requests):
        raise StreamMuseError("take: request ids repeat")
    for p in take.played:
        if p.request_id < 0:
            continue
        req = by_id.get(p.request_id)
        if req is None or not 0 <= p.staleness < len(req.accompaniment) or req.request_tick + p.staleness != p.tick:
            raise StreamMuseError(f"take: tick {p.tick} plays frame {p.staleness} of request {p.request_id}, which has no such frame")
    return by_id


def tick_rows(take: Take) -> list[TickRecord]:
    """``ticks.parquet`` rows; ``fresh`` as :meth:`SongClient.tick_records` defines it."""
    newest = np.full(take.n_ticks, -1, dtype=np.int64)
    for r in sorted(take.requests, key=lambda r: r.request_id):  # in send order: later requests win
        newest[r.request_tick: r.request_tick + r.gen_len] = r.request_id
    rows = []
    for p in take.played:
        available = p.request_id >= 0
        rows.append(TickRecord(take.name, p.tick, int(available), p.staleness if available else -1, p.request_id,
                               bool(available and p.request_id == newest[p.tick])))
    return rows


def request_rows(take: Take) -> list[dict]:
    """``requests.parquet`` rows (``network_ms`` is unknown in a browser: NaN)."""
    rows = []
    for r in take.requests:
        recv = math.nan if r.recv_ms is None else r.recv_ms
        rec = RequestRecord(take.name, r.request_id, r.send_tick, r.request_tick, r.gen_len, r.send_ms, recv,
                            recv - r.send_ms, _num(r.inference_ms), _num(r.queue_ms), math.nan, r.status)
        rows.append(rec.__dict__)
    return rows


def performance(take: Take, by_id: dict[int, TakeRequest]) -> Song:
    """The take as heard: the melody as played and the accompaniment frames as played."""
    acc = [(p.tick, int(d), int(pitch)) for p in take.played if p.request_id >= 0
           for pitch, d in by_id[p.request_id].accompaniment[p.staleness]]
    return Song(take.name, note_array(take.melody), note_array(acc))


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _lateness(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max())}


def manifest(take: Take, mismatches: int) -> dict:
    """The run manifest of a take (the replay manifest's keys; ``testset`` None: a take
    has no ground truth, so JSD and FMD stay empty)."""
    import streammuse
    from streammuse.experiment.runs import git_rev, machine

    return {
        "setting": SETTING, "interval": take.interval, "gen_len": take.gen_len, "bpm": take.bpm,
        "clock": "audio", "server_time": "measured", "server": take.server or None, "profile": None,
        "seed": take.seed, "sampling": take.sampling.model_dump(), "model_id": take.model_id,
        "git_rev": git_rev(), "machine": machine(), "testset": None, "songs": [take.name], "max_bars": None,
        "concurrency": 1, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "streammuse_version": getattr(streammuse, "__version__", "0.1.0"),
        "jam": {"pair_source": take.pair_source, "moved_notes": take.moved_notes, "dropped_notes": take.dropped_notes,
                "page_buffer_mismatches": mismatches, "tick_lateness": _lateness(take.tick_lateness_ms),
                "user_agent": take.user_agent},
    }


def write_take(take: Take, out: Path) -> Path:
    """Write ``take`` as a new run folder under ``out`` (``<date>-jam-I<I>-GL<GL>``); its path.

    Also keeps the page's raw log as ``take.json``. Raises StreamMuseError when the take
    is inconsistent or the folder cannot be written.
    """
    from streammuse.experiment.runs import RunWriter, new_run_dir

    by_id = check_take(take)
    derived = rederive_played(take)
    mismatches = sum(1 for p, d in zip(take.played, derived) if (p.request_id, p.staleness) != (d.request_id, d.staleness))
    writer = RunWriter(new_run_dir(Path(out), SETTING, take.interval, take.gen_len))
    try:
        writer.write_manifest(manifest(take, mismatches))
        (writer.path / "take.json").write_text(take.model_dump_json() + "\n")
        writer.write_song(performance(take, by_id), take.bpm, request_rows(take), [t.__dict__ for t in tick_rows(take)])
    except OSError as exc:
        raise StreamMuseError(f"{writer.path}: cannot write the take ({exc.strerror or exc})") from None
    return writer.path


def read_take(path: Path) -> Take:
    """A take saved by the page (``take.json``, downloaded when the server keeps no takes)."""
    try:
        return Take.model_validate(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise StreamMuseError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StreamMuseError(f"{path}: not a take ({first})") from None
