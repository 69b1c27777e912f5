"""Replay a jam take's melody through the Python client on the sim clock, with the
delays the page measured: the same melody, seed and (I, GL), the same network and
server times, the engine in this process.

What the page played and what this replay plays must then agree (the page follows the
client's rules, and a seeded engine fed the same melody generates the same music), so a
take can be checked against the reference client even when it was played on a busy
machine where many answers came late. Each request k of the take gives the sim its
delays, in send order (the sim draws delays in send order too):

* out: half the network time, plus how late the page sent it after its tick's onset;
* server: the measured ``inference_ms`` plus its part of ``queue_ms`` that is the
  server's batch window (the batcher waits up to ``max_wait_ms`` for other sessions'
  requests before it runs; the rest of the queue, waiting for the session's previous
  request, the sim's server re-creates);
* back: the other half of the network time,

where network = RTT - inference_ms - queue_ms. A request the server superseded or that
failed has no times of its own: it gets the median network and server times of the
others (should the sim run it, it takes as long as a typical request did). The page's
times are on the audio clock, which moves in render quanta (128 frames, 2.9 ms at 44.1
kHz); the replay uses them as the page recorded them, as the page's own decisions did.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from streammuse.client.latency import DelayDraw
from streammuse.contract import CreateSessionRequest, tau_ms
from streammuse.datasets.frames import cap_frame_notes, part_to_frames
from streammuse.datasets.song import note_array
from streammuse.experiment.take import SETTING, Take, manifest

REPLAY_SETTING = f"{SETTING}-replay"
# The batcher's wait for company (core.sessions.CoreOptions.max_wait_ms, 2 ms) plus the
# event loop's hand-over: the queue_ms the page saw when the server was idle was 2.4-3.2 ms.
BATCH_WINDOW_MS = 3.0


class TakeDelays:
    """Stands in for :class:`~streammuse.client.latency.LatencyInjector`: the take's delays."""

    def __init__(self, take: Take) -> None:
        tau = tau_ms(take.bpm)
        answered = {r.request_id: _network_ms(r) for r in take.requests
                    if r.status in ("ok", "late") and r.recv_ms is not None}
        median_net = float(np.median(list(answered.values()))) if answered else 0.0
        servers = [_server_ms(r) for r in take.requests if r.request_id in answered]
        median_server = float(np.median(servers)) if servers else 0.0
        self.draws: list[DelayDraw] = []
        for r in sorted(take.requests, key=lambda r: r.request_id):
            send_late = max(0.0, r.send_ms - r.send_tick * tau)
            net = answered.get(r.request_id, median_net)
            server = _server_ms(r) if r.request_id in answered else median_server
            self.draws.append(DelayDraw(net, net / 2.0 + send_late, net / 2.0, server))
        self._next = 0

    def draw(self, send_ms: float = 0.0) -> DelayDraw:
        """The next request's delays, in send order (``send_ms`` is not needed: a take
        replays its logged delays; a request past the log gets none)."""
        if self._next >= len(self.draws):
            return DelayDraw(0.0, 0.0, 0.0, 0.0)
        self._next += 1
        return self.draws[self._next - 1]


def _server_ms(r) -> float:
    return (r.inference_ms or 0.0) + min(r.queue_ms or 0.0, BATCH_WINDOW_MS)


def _network_ms(r) -> float:
    return max(0.0, r.recv_ms - r.send_ms - (r.inference_ms or 0.0) - (r.queue_ms or 0.0))


def replay_take(take: Take, engine, out: Path) -> Path:
    """Replay ``take`` (see the module doc) into a new run folder under ``out``; its path."""
    from streammuse.client.session import SongClient
    from streammuse.client.sim import SimSong, run_simulation
    from streammuse.client.transports import CoreFront
    from streammuse.core.drivers import VirtualDriver
    from streammuse.core.sessions import SessionCore
    from streammuse.experiment.runs import RunWriter, new_run_dir

    melody = note_array(take.melody)
    frames = part_to_frames(cap_frame_notes(melody)[0], take.n_ticks)
    client = SongClient(take.name, frames, take.interval, take.gen_len, tau_ms(take.bpm))
    session = CreateSessionRequest(bpm=take.bpm, sampling=take.sampling, seed=take.seed)
    # Each request's measured server time rides in its draw (server_jitter_ms, on the way
    # back), so the virtual replica's batches take no time of their own.
    driver = VirtualDriver(SessionCore(engine), lambda batch: 0.0)
    run_simulation([SimSong(client, TakeDelays(take), session)], lambda: (CoreFront(driver), driver))
    writer = RunWriter(new_run_dir(Path(out), REPLAY_SETTING, take.interval, take.gen_len))
    writer.write_manifest({**manifest(take, 0), "setting": REPLAY_SETTING, "clock": "sim",
                           "model_id": getattr(engine, "model_id", take.model_id)})
    writer.write_song(client.performance(melody), take.bpm, client.request_rows(),
                      [asdict(t) for t in client.tick_records()])
    return writer.path
