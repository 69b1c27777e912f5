"""The song client's request timeline (section IV-A) on hand-made arrivals."""

import numpy as np

from streammuse.client.session import SongClient
from streammuse.contract import InferResponse, frames_to_wire
from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames

TAU = 125.0


def _melody(n: int) -> np.ndarray:
    m = empty_frames(n)
    m[:, 0] = vocab.note_to_token(60 + np.arange(n) % 12, 1)  # a different note per tick
    m[:, 1] = vocab.EOF
    return m


def _answer(rec, gen_len, status="ok"):
    acc = [[[48 + rec.request_tick % 12 + i, 2]] for i in range(gen_len)] if status == "ok" else []
    return InferResponse(status=status, request_tick=rec.request_tick, accompaniment=acc, inference_ms=3.0)


def test_count_in_and_melody_chunks():
    m = _melody(8)
    c = SongClient("x", m, interval=2, gen_len=5, tau_ms=TAU)
    [(rec0, req0)] = c.on_tick(-1, -TAU)
    assert (rec0.send_tick, req0.request_tick, req0.melody, req0.melody_start) == (-1, 0, [], 0)
    assert c.on_tick(0, 0.0) == []
    [(rec1, req1)] = c.on_tick(1, TAU)  # s = 2 goes out at tick 1 carrying M[0], M[1]
    assert (rec1.send_tick, req1.request_tick, req1.melody_start) == (1, 2, 0)
    assert [[list(n) for n in f] for f in req1.melody] == frames_to_wire(m[0:2]) == [[[60, 1]], [[61, 1]]]
    # Request 0 was never answered: request 2 (s = 4) still carries M[0..3].
    c.on_tick(2, 2 * TAU)
    [(_, req2)] = c.on_tick(3, 3 * TAU)
    assert (req2.request_tick, req2.melody_start, len(req2.melody)) == (4, 0, 4)


def test_chunk_starts_at_last_answered_request():
    c = SongClient("x", _melody(8), interval=2, gen_len=3, tau_ms=TAU)
    [(rec0, _)] = c.on_tick(-1, -TAU)
    c.on_reply(rec0, _answer(rec0, 3), -10.0, 0.0)
    c.on_tick(0, 0.0)
    [(rec1, req1)] = c.on_tick(1, TAU)
    c.on_reply(rec1, _answer(rec1, 3), TAU + 50, 0.0)
    c.on_tick(2, 2 * TAU)
    [(_, req2)] = c.on_tick(3, 3 * TAU)
    assert (req2.melody_start, len(req2.melody)) == (2, 2)


def test_rtt_below_tau_gives_staleness_zero():
    n, gl = 6, 3
    c = SongClient("x", _melody(n), interval=1, gen_len=gl, tau_ms=TAU)
    for t in range(-1, n):
        for rec, _ in c.on_tick(t, t * TAU):
            c.on_reply(rec, _answer(rec, gl), t * TAU + 100.0, 0.0)  # RTT 100 ms < tau
    ticks = c.tick_records()
    assert [r.staleness for r in ticks] == [0] * n
    assert all(r.fresh for r in ticks)
    assert [r.status for r in c.requests] == ["ok"] * n


def test_late_answer_status_and_backup():
    c = SongClient("x", _melody(6), interval=1, gen_len=3, tau_ms=TAU)
    [(rec0, _)] = c.on_tick(-1, -TAU)
    c.on_reply(rec0, _answer(rec0, 3), -1.0, 0.0)
    [(rec1, _)] = c.on_tick(0, 0.0)
    [(rec2, _)] = c.on_tick(1, TAU)  # rec1 (s = 1) has not come back: tick 1 plays rec0's backup
    c.on_reply(rec1, _answer(rec1, 3), TAU + 10, 0.0)  # late for tick 1, frames 1, 2 used
    assert rec1.status == "late"
    c.on_tick(2, 2 * TAU)
    ticks = c.tick_records()
    assert [(r.request_id, r.staleness, r.fresh) for r in ticks] == [(0, 0, True), (0, 1, False), (1, 1, False)]
    assert rec1.rtt_ms == TAU + 10 - 0.0


def test_failures_back_off():
    c = SongClient("x", _melody(40), interval=1, gen_len=3, tau_ms=TAU)
    [(rec0, _)] = c.on_tick(-1, -TAU)
    c.on_reply(rec0, _answer(rec0, 3), -1.0, 0.0)
    sent = {}
    for t in range(0, 12):
        for rec, req in c.on_tick(t, t * TAU):
            sent[t] = req
            if t < 6:
                c.on_error(rec, t * TAU + 1, unknown_session=False)
            else:
                c.on_reply(rec, _answer(rec, 3), t * TAU + 1, 0.0)
    # After k failures in a row the next request waits 2^(k-1) ticks (I = 1):
    # failures at ticks 0, 1, 3; the request at tick 7 succeeds and the schedule resumes.
    assert sorted(sent) == [0, 1, 3, 7, 8, 9, 10, 11]
    assert [r.status for r in c.requests] == ["ok", "failed", "failed", "failed", "ok", "ok", "ok", "ok", "ok"]
    # Backups cover ticks 0..2 (request 0's GL = 3), then misses until request 7's frames.
    assert [r.available for r in c.tick_records()] == [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert sent[7].melody_start == 0 and len(sent[7].melody) == 8  # all since request 0 (s = 0)


def test_unknown_session_context_has_melody_and_played_accompaniment():
    c = SongClient("x", _melody(10), interval=2, gen_len=4, tau_ms=TAU)
    [(rec0, _)] = c.on_tick(-1, -TAU)
    c.on_reply(rec0, _answer(rec0, 4), -1.0, 0.0)  # A[0..3]
    c.on_tick(0, 0.0)
    [(rec1, _)] = c.on_tick(1, TAU)
    c.on_error(rec1, TAU + 5, unknown_session=True)
    c.on_tick(2, 2 * TAU)
    [(_, req)] = c.on_tick(3, 3 * TAU)
    assert req.context is not None and req.melody == [] and req.request_tick == 4
    assert len(req.context.melody) == 4 and len(req.context.accompaniment) == 4
    assert [f[0][0] for f in req.context.accompaniment] == [48, 49, 50, 51]
