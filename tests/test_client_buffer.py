"""The tick-aligned buffer (paper Fig. 2) on hand-made timelines."""

import numpy as np

from streammuse.client.buffer import TickBuffer


def _gen(request_tick: int, gen_len: int) -> list[np.ndarray]:
    # Frame i of request s carries the value 100*s + i so we can see who wrote a slot.
    return [np.array([100 * request_tick + i]) for i in range(gen_len)]


def test_fig2_timeline_backup_and_miss():
    # Fig. 2: I = 2, GL = 5. Request 1 (s=2) arrives 1.5 ticks late: during tick 2,
    # so its frame for tick 2 is dropped. Request 2 (s=4) arrives in time and overwrites
    # ticks 4..6. Request 3 (s=6) is very late: ticks 7, 8 use request 2's backups,
    # tick 9 is a miss.
    buf = TickBuffer(12)
    for t in range(3):
        buf.play(t)  # ticks 0..2 start with nothing; tick 2 starts before request 1 arrives
    assert buf.offer(1, 2, _gen(2, 5)) == 4  # tick 2 is late, ticks 3..6 written
    assert buf.play(3).staleness == 1
    assert buf.offer(2, 4, _gen(4, 5)) == 5  # arrives before tick 4's onset
    played = [buf.play(t) for t in range(4, 10)]
    assert [p.request_id for p in played] == [2, 2, 2, 2, 2, -1]
    assert [p.staleness for p in played] == [0, 1, 2, 3, 4, -1]
    assert [p.available for p in played] == [True] * 5 + [False]
    assert buf.offer(3, 6, _gen(6, 5)) == 1  # only tick 10 is still ahead
    p10 = buf.play(10)
    assert (p10.request_id, p10.staleness, int(p10.frame[0])) == (3, 4, 604)


def test_late_frame_dropped_strictly_at_onset():
    buf = TickBuffer(4)
    buf.play(0)
    # Arriving at the onset of tick 1 counts as late: play(1) ran first.
    buf.play(1)
    assert buf.offer(0, 1, _gen(1, 2)) == 1  # tick 1 dropped, tick 2 written
    assert buf.request_id[1] == -1
    p2 = buf.play(2)
    assert (p2.available, p2.request_id, p2.staleness) == (True, 0, 1)


def test_older_response_never_overwrites_newer():
    buf = TickBuffer(10)
    assert buf.offer(5, 4, _gen(4, 3)) == 3
    assert buf.offer(4, 2, _gen(2, 5)) == 2  # ticks 2, 3 only; 4..6 keep the newer
    assert list(buf.request_id[2:7]) == [4, 4, 5, 5, 5]
    assert list(buf.index[2:7]) == [0, 1, 0, 1, 2]


def test_staleness_when_rtt_below_one_tick_is_zero():
    # I = 1, GL = 3; each request for s goes out at tick s-1 and comes back within the tick.
    n, gl = 6, 3
    buf = TickBuffer(n)
    buf.offer(0, 0, _gen(0, gl))  # the count-in request, back before tick 0
    out = []
    for t in range(n):
        out.append(buf.play(t))
        if t + 1 < n:
            buf.offer(t + 1, t + 1, _gen(t + 1, gl))
    assert [p.staleness for p in out] == [0] * n
    assert [p.request_id for p in out] == list(range(n))
