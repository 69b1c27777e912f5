"""Client benchmark: wall-clock tick jitter, and sim-clock speed over a test set.

Tick jitter: N songs play at once on the wall clock (120 BPM, I = 1, GL = 3) against a
server that answers at once with empty frames, so only the client's clock is measured;
each tick's lateness is the time between its ideal onset and the moment the client acts
on it. Sim speed: the whole test set replayed on the sim clock with the modelled server
time of the ``local`` profile and the shipped engine in process.

    .venv/bin/python bench/client_jitter.py jitter --bars 8
    .venv/bin/python bench/client_jitter.py sim testset/
    .venv/bin/python bench/client_jitter.py il      # fits the local profile's server_model
"""

from __future__ import annotations

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from streammuse.client.latency import LatencyInjector, load_profile
from streammuse.client.session import SongClient
from streammuse.contract import tau_ms
from streammuse.datasets.frames import empty_frames
from streammuse.contract import CreateSessionRequest, CreateSessionResponse, InferRequest, InferResponse


class NoOpTransport:
    """Answers every request at once with GL empty frames: the clock is all that is measured."""

    def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse:
        return CreateSessionResponse(session_id="0" * 32)

    def infer(self, session_id: str, request: InferRequest, timeout_s: float | None = None) -> InferResponse:
        return InferResponse(status="ok", request_tick=request.request_tick, accompaniment=[[]] * request.gen_len)

    def close_session(self, session_id: str) -> None:
        pass


def jitter(n_songs: int, bars: int, bpm: float) -> np.ndarray:
    """Lateness (ms) of every tick of ``n_songs`` songs played at once."""
    from streammuse.client.wall import WallSong, play_songs_wall

    transport, profile = NoOpTransport(), load_profile("local")
    with ThreadPoolExecutor(max_workers=n_songs * 4) as pool:
        songs = [
            WallSong(SongClient(f"s{i}", empty_frames(bars * 16), 1, 3, tau_ms(bpm)), transport,
                     LatencyInjector(profile, i), CreateSessionRequest(), bpm, pool)
            for i in range(n_songs)
        ]
        asyncio.run(play_songs_wall(songs, n_songs))
    return np.concatenate([s.clock.lateness_ms for s in songs])


def sim_speed(folder: str, gen_len: int, interval: int, songs: int | None, max_bars: int | None,
              random_weights: bool) -> None:
    """Replay the whole test set on the sim clock; print songs per minute."""
    from streammuse.experiment.config import ReplayConfig
    from streammuse.experiment.replay import load_songs, run_pair
    from streammuse.model.engine import StreamingEngine
    import tempfile
    from pathlib import Path

    cfg = ReplayConfig(testset=Path(folder), setting="local", clock="sim", interval=interval, gen_len=gen_len,
                       songs=songs, max_bars=max_bars, out=Path(tempfile.mkdtemp()))
    songs = load_songs(cfg)
    engine = StreamingEngine.random("tiny") if random_weights else StreamingEngine.load()
    start = time.perf_counter()
    run_pair(cfg, songs, load_profile("local"), engine=engine, model_id="bench")
    elapsed = time.perf_counter() - start
    ticks = sum(s.n_ticks for s in songs)
    played_min = ticks * tau_ms(cfg.bpm) / 60000
    print(f"sim clock, I={interval} GL={gen_len}: {len(songs)} songs ({ticks} ticks, {played_min:.1f} min of music) "
          f"in {elapsed:.1f} s = {len(songs) / elapsed * 60:.1f} songs/min ({played_min / (elapsed / 60):.1f}x real time)")


def server_model(gen_lens: list[int], repeats: int) -> None:
    """Time the shipped engine's warm infer per GL and fit IL(GL) = a GL^2 + b GL + c."""
    from streammuse.model.engine import Sampling, StreamingEngine

    engine = StreamingEngine.load()
    melody = empty_frames(1)
    means, sds = [], []
    for gl in gen_lens:
        state = engine.new_session(Sampling(temperature=1.0, top_k=0, top_p=0.95, seed=0))
        times, tick = [], 0
        for _ in range(repeats + 2):  # the first two warm the session up
            start = time.perf_counter()
            engine.infer(state, request_tick=tick + 1, melody_frames=melody, gen_len=gl)
            times.append((time.perf_counter() - start) * 1000)
            tick += 1
        means.append(float(np.mean(times[2:])))
        sds.append(float(np.std(times[2:])))
        print(f"GL {gl:2d}: IL mean {means[-1]:.2f} ms, sd {sds[-1]:.2f} ms")
    a, b, c = np.polyfit(gen_lens, means, 2)
    print(f'server_model: {{"a": {a:.4f}, "b": {b:.4f}, "c": {c:.4f}, "sigma_ms": {float(np.mean(sds)):.3f}}}')


def main() -> None:
    """Parse the command line and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    j = sub.add_parser("jitter")
    j.add_argument("--songs", default="1,8,32")
    j.add_argument("--bars", type=int, default=8)
    j.add_argument("--bpm", type=float, default=120.0)
    s = sub.add_parser("sim")
    s.add_argument("testset")
    s.add_argument("--interval", type=int, default=2)
    s.add_argument("--gen-len", type=int, default=5)
    s.add_argument("--songs", type=int, default=None, help="first N songs (default: all)")
    s.add_argument("--max-bars", type=int, default=None)
    s.add_argument("--random-weights", action="store_true", help="random tiny weights (same compute)")
    m = sub.add_parser("il")
    m.add_argument("--gen-lens", default="1,2,3,5,9,15")
    m.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if args.what == "jitter":
        for n in (int(x) for x in args.songs.split(",")):
            late = jitter(n, args.bars, args.bpm)
            print(f"{n:3d} songs, {args.bpm:g} BPM, {len(late)} ticks: lateness median {np.median(late):.3f} ms, "
                  f"p99 {np.percentile(late, 99):.3f} ms, max {late.max():.3f} ms")
    elif args.what == "il":
        server_model([int(x) for x in args.gen_lens.split(",")], args.repeats)
    else:
        sim_speed(args.testset, args.gen_len, args.interval, args.songs, args.max_bars, args.random_weights)


if __name__ == "__main__":
    main()
