"""Run an experiment: the test set's melodies through the client, one run folder per (I, GL).

The one home for "replay": ``streammuse replay``, the gate and the benchmarks all call
:func:`run_pair`. For each song the true melody is released tick by tick to a
:class:`~streammuse.client.session.SongClient`, paced by the wall clock (a real server:
``serve``, ``deploy`` or one started here) or by the sim clock (the same session core on
a virtual replica, ``servers.virtual_replica``), under a latency profile; each song's
performance and logs go to the run folder when it ends. ``setting="offline"`` is the
paper's offline baseline: the engine at I = 1, GL = 1 on the full true melody with no
latency, written with the same layout.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from streammuse.client.adaptive import Adapter
from streammuse.client.latency import LatencyInjector, LatencyProfile, load_profile
from streammuse.client.session import SongClient
from streammuse.contract import frame_to_wire, tau_ms
from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.song import Song
from streammuse.errors import StreamMuseError
from streammuse.experiment.config import ReplayConfig
from streammuse.experiment.runs import RunWriter, open_run_folder
from streammuse.experiment.servers import batches_engine_across_songs, engine_calls_label, server_time_label, virtual_replica


def load_songs(cfg: ReplayConfig) -> list[Song]:
    """The test set's songs (the first ``cfg.songs`` by name, cropped to ``cfg.max_bars``)."""
    from streammuse.datasets.testset import load_testset, midi_files

    names = sorted(p.stem for p in midi_files(cfg.testset))  # missing or empty folder: StreamMuseError
    if cfg.songs is not None:
        if cfg.songs < 1:
            raise StreamMuseError(f"--songs must be at least 1 (got {cfg.songs})")
        names = names[: cfg.songs]
    return load_testset(cfg.testset, songs=names, max_bars=cfg.max_bars)


def resolve_profile(cfg: ReplayConfig) -> LatencyProfile:
    """The profile file given, else the shipped one named after the setting."""
    if cfg.profile is not None:
        return load_profile(Path(cfg.profile))
    return load_profile("local" if cfg.setting == "offline" else cfg.setting)


def open_run(cfg: ReplayConfig, profile: LatencyProfile, songs: list[Song], model_id: str) -> RunWriter:
    """The run folder: a new one, or with ``--resume`` the newest one with these settings."""
    return open_run_folder(cfg, profile, songs, model_id, server_time_label(cfg, profile))


def _clients(cfg: ReplayConfig, songs: list[Song], done: set[str], factory=None):
    """``(index, song, client)`` for every song not finished yet."""
    factory = factory or SongClient
    for index, song in enumerate(songs):
        if song.name not in done:
            m, _, _ = song_to_frames(song)
            tau = tau_ms(cfg.bpm)
            extra = {} if cfg.adaptive is None else {"adapter": Adapter(song.name, tau, cfg.adaptive)}
            yield index, song, factory(song.name, m, cfg.interval, cfg.gen_len, tau, **extra)


def _save(writer: RunWriter, client: SongClient, melody_notes: np.ndarray, bpm: float) -> None:
    switches = client.switch_rows() if client.adapter is not None else None
    writer.write_song(client.performance(melody_notes), bpm, client.request_rows(),
                      [asdict(t) for t in client.tick_records()], switches)


def replay_sim(cfg: ReplayConfig, engine, songs: list[Song], writer: RunWriter, profile: LatencyProfile,
               progress=None, client_factory=None, batch_engine: bool | None = None) -> None:
    """Replay on the sim clock: ``cfg.concurrency`` songs at a time on one virtual
    timeline, sharing one virtual replica running the session core (``cfg.servers``
    "shared") or each on its own ("per-song", the paper's single-user setting), reached
    directly or through the HTTP app (``cfg.front``), each batch lasting ``cfg.server_time``.

    ``batch_engine`` (default: where it is exact, ``servers.batches_engine_across_songs``):
    the per-song replicas' batches run in one engine call per round; the manifest's
    ``engine_calls`` says which."""
    from streammuse.client.sim import SimSong, run_simulation, shared
    from streammuse.core.drivers import DeferredCompute

    batched = batches_engine_across_songs(cfg) if batch_engine is None else batch_engine
    if batched and (cfg.servers != "per-song" or cfg.server_time != "modelled"):
        raise StreamMuseError("batching the engine across songs needs --servers per-song and --server-time modelled")
    writer.add_to_manifest({"engine_calls": engine_calls_label(batched)})
    if cfg.servers == "shared":
        server = shared(*reversed(virtual_replica(cfg, engine, profile)))
    else:
        deferred = DeferredCompute() if batched else None
        server = lambda: tuple(reversed(virtual_replica(cfg, engine, profile, deferred)))  # noqa: E731 - one per song
    melodies, sims = {}, []
    for index, song, client in _clients(cfg, songs, writer.done_songs(), client_factory):
        melodies[song.name] = song.melody
        sims.append(SimSong(client, LatencyInjector(profile, seed=(cfg.seed, index)), cfg.session_request(index)))

    async def finished(sim: SimSong) -> None:
        _save(writer, sim.client, melodies[sim.client.name], cfg.bpm)
        if progress is not None:
            progress(sim.client.name)

    run_simulation(sims, server, cfg.concurrency, finished)


def replay_wall(cfg: ReplayConfig, transport, songs: list[Song], writer: RunWriter, profile: LatencyProfile,
                progress=None, watch=None) -> list[float]:
    """Replay on the wall clock against ``transport``; returns every tick's lateness (ms).

    ``progress(name)`` is called when a song is written; ``watch(playing)`` a few times a
    second with the :class:`~streammuse.client.wall.WallSong` objects playing.
    """
    from streammuse.client.wall import WallSong, play_songs_wall

    # Each song keeps up to ceil(GL / I) + a few requests in flight; threads block on I/O only.
    workers = cfg.concurrency * (cfg.gen_len // cfg.interval + 4)
    lateness: list[float] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="streammuse-send") as pool:
        melodies, wall_songs = {}, []
        for index, song, client in _clients(cfg, songs, writer.done_songs()):
            melodies[song.name] = song.melody
            wall_songs.append(WallSong(client, transport, LatencyInjector(profile, seed=(cfg.seed, index)),
                                       cfg.session_request(index), cfg.bpm, pool))

        async def finished(ws: WallSong) -> None:
            if ws.start_error is not None:
                writer.add_failed_song(ws.client.name, ws.start_error)  # no done-marker: --resume plays it
                return
            lateness.extend(ws.clock.lateness_ms)
            await asyncio.get_running_loop().run_in_executor(pool, _save, writer, ws.client, melodies[ws.client.name], cfg.bpm)
            if progress is not None:
                progress(ws.client.name)

        asyncio.run(play_songs_wall(wall_songs, cfg.concurrency, on_done=finished, watch=watch))
    return lateness


OFFLINE_BATCH = 16  # songs generated together by the offline baseline (one engine call per tick)


def replay_offline(cfg: ReplayConfig, engine, songs: list[Song], writer: RunWriter, progress=None) -> None:
    """The offline baseline: ``generate_offline`` on the full true melody, no latency,
    :data:`OFFLINE_BATCH` songs at a time in one batched engine call per tick (each
    song's tokens are its own: its own seeded session).

    Logged as I = 1, GL = 1 with every request answered in time: I(t) = 1, S(t) = 0.
    """
    from streammuse.core.engine_inputs import session_sampling
    from streammuse.model.engine import generate_offline_batch

    pending = list(_clients(cfg.with_pair(1, 1), songs, writer.done_songs()))
    for lo in range(0, len(pending), OFFLINE_BATCH):
        chunk = pending[lo : lo + OFFLINE_BATCH]
        accs = generate_offline_batch(
            engine, [client.input.melody_frames for _, _, client in chunk],
            [session_sampling(cfg.session_request(index)) for index, _, _ in chunk])
        for (_, song, client), acc in zip(chunk, accs):
            for t in range(-1, client.n_ticks):
                for rec, _ in client.on_tick(t, t * client.tau_ms):
                    rec.status = "ok"
                    client.player.buffer.offer(rec.request_id, rec.request_tick, [frame_to_wire(acc[rec.request_tick])])
            _save(writer, client, song.melody, cfg.bpm)
            if progress is not None:
                progress(song.name)


def run_pair(cfg: ReplayConfig, songs: list[Song], profile: LatencyProfile, engine=None, transport=None,
             model_id: str = "unknown", progress=None, watch=None, client_factory=None,
             writer: RunWriter | None = None) -> tuple[Path, list[float]]:
    """One configuration into its run folder (``writer``, else the one :func:`open_run`
    picks): offline (``engine``), sim clock (``engine``) or wall clock (``transport``).
    Returns the folder and the wall clock's tick lateness."""
    writer = writer or open_run(cfg, profile, songs, model_id)
    if hasattr(engine, "device_label"):  # sim and offline: the numbers depend on where the model ran
        writer.add_to_manifest({"engine_device": engine.device_label})
    if cfg.setting == "offline":
        replay_offline(cfg, engine, songs, writer, progress)
        return writer.path, []
    if cfg.clock == "sim":
        replay_sim(cfg, engine, songs, writer, profile, progress, client_factory)
        return writer.path, []
    from streammuse.experiment.health import assess, load_average

    before = load_average()
    lateness = replay_wall(cfg, transport, songs, writer, profile, progress, watch)
    health = assess(lateness, tau_ms(cfg.bpm), max(before, load_average()))
    writer.add_to_manifest({"realtime_health": health.to_dict()})
    return writer.path, lateness


def realtime_summary(ticks: pd.DataFrame) -> dict[str, float]:
    """ISR, Staleness and ISR_w (section V-D, ``streammuse.metrics.realtime``) over a run's ticks."""
    from streammuse.metrics import realtime

    return {"isr": realtime.isr(ticks), "staleness": realtime.staleness(ticks), "isr_w": realtime.isr_w(ticks)}
