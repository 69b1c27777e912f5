"""`streammuse replay`: play a test set's melodies through the client and record the runs.

For each (I, GL) pair: every song's true melody is released tick by tick to a
:class:`~streammuse.client.session.SongClient` paced by the wall clock (against a real
server) or the sim clock (against the engine in process), under a latency profile; each
song's performance and logs go to a run folder (``runs.py``) when the song ends.
``setting="offline"`` is the paper's offline baseline: the engine at I = 1, GL = 1 on
the full true melody with no latency, written with the same layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

import streammuse
from streammuse.client.clock import tau_ms
from streammuse.client.latency import LatencyInjector, LatencyProfile, load_profile
from streammuse.client.runs import RunWriter, find_resumable, git_rev, machine, new_run_dir
from streammuse.client.session import SongClient
from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.song import Song
from streammuse.errors import StreamMuseError
from streammuse.serving.protocol import MAX_GEN_LEN, CreateSessionRequest, SamplingSettings

SETTINGS = ("local", "local-server", "remote", "offline")
PAPER_SWEEP = ((1, 3), (2, 5), (2, 9), (4, 5), (4, 9), (4, 15), (7, 9), (7, 15))  # Table III


@dataclass
class ReplayConfig:
    """Everything one `streammuse replay` needs (saved in each run's manifest)."""

    testset: Path
    setting: str = "local"
    bpm: float = 120.0
    interval: int = 2
    gen_len: int = 5
    server: str | None = None
    profile: str | None = None  # a file; None: the shipped profile named after the setting
    clock: str = "wall"
    concurrency: int = 4
    songs: int | None = 8
    max_bars: int | None = 16
    seed: int = 0
    out: Path = Path("runs")
    resume: bool = False
    server_time: str = "modelled"  # sim clock: "modelled" (profile server_model) or "measured"
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    def validate(self) -> None:
        """Check the flags a user can get wrong (StreamMuseError with one line)."""
        if self.setting not in SETTINGS:
            raise StreamMuseError(f"--setting must be one of {', '.join(SETTINGS)}, not {self.setting!r}")
        if self.clock not in ("wall", "sim"):
            raise StreamMuseError(f"--clock must be wall or sim, not {self.clock!r}")
        if not 0 < self.bpm <= 400:
            raise StreamMuseError("--bpm must be in (0, 400]")
        if self.interval < 1 or not 1 <= self.gen_len <= MAX_GEN_LEN:
            raise StreamMuseError(f"need --interval >= 1 and 1 <= --gen-len <= {MAX_GEN_LEN}")
        if self.concurrency < 1:
            raise StreamMuseError("--concurrency must be >= 1")
        if self.server_time not in ("modelled", "measured"):
            raise StreamMuseError("server time must be modelled or measured")


def parse_sweep(text: str | None) -> list[tuple[int, int]]:
    """``"1,3 2,5"`` -> ``[(1, 3), (2, 5)]``; ``"paper"`` -> the paper's 8 pairs."""
    if text is None:
        return []
    if text.strip() in ("", "paper"):
        return list(PAPER_SWEEP)
    pairs = []
    for item in text.split():
        try:
            i, gl = (int(x) for x in item.split(","))
        except ValueError:
            raise StreamMuseError(f"--sweep: {item!r} is not a pair I,GL (e.g. \"1,3 2,5\")") from None
        pairs.append((i, gl))
    return pairs


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


def _manifest(cfg: ReplayConfig, profile: LatencyProfile, songs: list[Song], model_id: str) -> dict:
    setting = asdict(cfg)
    return {
        "setting": cfg.setting, "interval": cfg.interval, "gen_len": cfg.gen_len, "bpm": cfg.bpm,
        "clock": "none" if cfg.setting == "offline" else cfg.clock,
        "server_time": cfg.server_time if cfg.clock == "sim" else "measured",
        "server": cfg.server, "profile": profile.to_dict(), "seed": cfg.seed,
        "sampling": setting["sampling"], "model_id": model_id, "git_rev": git_rev(), "machine": machine(),
        "testset": str(Path(cfg.testset).resolve()), "songs": [s.name for s in songs], "max_bars": cfg.max_bars,
        "concurrency": cfg.concurrency, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "streammuse_version": streammuse.__version__ if hasattr(streammuse, "__version__") else "0.1.0",
    }


def open_run(cfg: ReplayConfig, profile: LatencyProfile, songs: list[Song], model_id: str) -> RunWriter:
    """The run folder: a new one, or with ``--resume`` the newest one for these settings."""
    out = Path(cfg.out)
    if cfg.resume:
        found = find_resumable(out, cfg.setting, cfg.interval, cfg.gen_len)
        if found is not None:
            return RunWriter(found)
    writer = RunWriter(new_run_dir(out, cfg.setting, cfg.interval, cfg.gen_len))
    writer.write_manifest(_manifest(cfg, profile, songs, model_id))
    return writer


def _song_parts(song: Song) -> tuple[np.ndarray, np.ndarray]:
    m, _, _ = song_to_frames(song)
    return m, song.melody


def _session_request(cfg: ReplayConfig, index: int) -> CreateSessionRequest:
    return CreateSessionRequest(bpm=cfg.bpm, sampling=cfg.sampling, seed=(cfg.seed * 1000 + index) % 2**31)


def _injector(profile: LatencyProfile, cfg: ReplayConfig, index: int) -> LatencyInjector:
    return LatencyInjector(profile, seed=(cfg.seed, index))


def _save(writer: RunWriter, client: SongClient, melody_notes: np.ndarray, bpm: float) -> None:
    writer.write_song(client.performance(melody_notes), bpm,
                      client.request_rows(), [asdict(t) for t in client.tick_records()])


def replay_sim(cfg: ReplayConfig, engine, songs: list[Song], writer: RunWriter, profile: LatencyProfile,
               progress=None) -> None:
    """Replay on the sim clock with the engine in this process (``--clock sim``)."""
    from streammuse.client.inprocess import InProcessTransport
    from streammuse.client.sim import simulate_song

    transport = InProcessTransport(engine)
    done = writer.done_songs()
    for index, song in enumerate(songs):
        if song.name in done:
            continue
        m, melody = _song_parts(song)
        client = SongClient(song.name, m, cfg.interval, cfg.gen_len, tau_ms(cfg.bpm))
        simulate_song(client, transport, _injector(profile, cfg, index), _session_request(cfg, index), cfg.server_time)
        _save(writer, client, melody, cfg.bpm)
        if progress is not None:
            progress(song.name)


def replay_wall(cfg: ReplayConfig, transport, songs: list[Song], writer: RunWriter, profile: LatencyProfile,
                progress=None, watch=None) -> list[float]:
    """Replay on the wall clock against ``transport``; returns every tick's lateness (ms).

    ``progress(name)`` is called when a song is written; ``watch(playing)`` a few times a
    second with the :class:`~streammuse.client.wall.WallSong` objects playing.
    """
    from streammuse.client.wall import WallSong, play_songs_wall

    done = writer.done_songs()
    # Each song keeps up to ceil(GL / I) + a few requests in flight; threads block on I/O only.
    workers = cfg.concurrency * (cfg.gen_len // cfg.interval + 4)
    lateness: list[float] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="streammuse-send") as pool:
        wall_songs, melodies = [], {}
        for index, song in enumerate(songs):
            if song.name in done:
                continue
            m, melodies[song.name] = _song_parts(song)
            client = SongClient(song.name, m, cfg.interval, cfg.gen_len, tau_ms(cfg.bpm))
            wall_songs.append(WallSong(client, transport, _injector(profile, cfg, index),
                                       _session_request(cfg, index), cfg.bpm, pool))

        async def finished(ws: WallSong) -> None:
            lateness.extend(ws.clock.lateness_ms)
            await asyncio.get_running_loop().run_in_executor(
                pool, _save, writer, ws.client, melodies[ws.client.name], cfg.bpm)
            if progress is not None:
                progress(ws.client.name)

        asyncio.run(play_songs_wall(wall_songs, cfg.concurrency, on_done=finished, watch=watch))
    return lateness


def replay_offline(cfg: ReplayConfig, engine, songs: list[Song], writer: RunWriter, progress=None) -> None:
    """The offline baseline: ``generate_offline`` on the full true melody, no latency.

    Logged as I = 1, GL = 1 with every request answered in time: I(t) = 1, S(t) = 0.
    """
    from streammuse.client.wire import frame_to_wire
    from streammuse.model.engine import Sampling, generate_offline

    done = writer.done_songs()
    for index, song in enumerate(songs):
        if song.name in done:
            continue
        m, melody = _song_parts(song)
        s = cfg.sampling
        acc = generate_offline(engine, m, Sampling(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                                   seed=_session_request(cfg, index).seed))
        client = SongClient(song.name, m, 1, 1, tau_ms(cfg.bpm))
        for t in range(-1, len(m)):
            for rec, _ in client.on_tick(t, t * client.tau_ms):
                rec.status = "ok"
                client.player.buffer.offer(rec.request_id, rec.request_tick, [frame_to_wire(acc[rec.request_tick])])
        _save(writer, client, melody, cfg.bpm)
        if progress is not None:
            progress(song.name)


def realtime_summary(ticks: pd.DataFrame) -> dict[str, float]:
    """ISR, Staleness and ISR_w (section V-D, ``streammuse.metrics.realtime``) over a run's ticks."""
    from streammuse.metrics import realtime

    return {"isr": realtime.isr(ticks), "staleness": realtime.staleness(ticks), "isr_w": realtime.isr_w(ticks)}


@contextlib.contextmanager
def open_transport(cfg: ReplayConfig, model: Path | None = None, random_weights: bool = False):
    """The transport for a wall-clock run: ``--server URL`` (http:// or ipc://), else an
    embedded server started here (IPC for ``local``, a local Ray Serve app otherwise) and
    stopped on exit."""
    from streammuse.serving import transport as tr

    if cfg.server:
        transport = tr.connect(cfg.server)
        try:
            yield transport
        finally:
            transport.close()
        return
    kind = "ipc" if cfg.setting == "local" else "ray"
    with tr.start_embedded(kind, checkpoint=model, random_weights=random_weights) as transport:
        yield transport


def check_server(transport, cfg: ReplayConfig) -> str:
    """Open and close one session, so an unreachable server is one clear line before any
    run folder is made; returns the server's model id (for the run manifest)."""
    from streammuse.serving.transport import ServerUnavailable

    try:
        created = transport.create_session(_session_request(cfg, 0))
        transport.close_session(created.session_id)
        return created.model_id
    except (ServerUnavailable, OSError) as exc:
        where = cfg.server or "the embedded server"
        raise StreamMuseError(f"server unreachable ({where}): {exc}") from None


def with_pair(cfg: ReplayConfig, interval: int, gen_len: int) -> ReplayConfig:
    """The same config for another (I, GL) pair."""
    return replace(cfg, interval=interval, gen_len=gen_len)
