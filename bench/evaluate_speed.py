"""How long `streammuse evaluate` takes on a full 64-song run (targets: 30 s without FMD,
60 s for FMD with the offline extractor).

Uses RUN when given; otherwise builds a synthetic run from the test set in a temporary
folder (the real layout of docs/design.md section 5, written by the client's RunWriter):
whole songs, accompaniment = the truth with every note whose onset tick falls in a
simulated miss dropped, ticks with a seeded Bernoulli(0.9) availability and staleness
0..4. NLL uses the shipped checkpoint when present, else a random tiny engine (same cost
per token as its config, so say which in the figures).

    .venv/bin/python bench/evaluate_speed.py [RUN] [--songs 64] [--max-bars 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_run(root: Path, testset: Path, n_songs: int, max_bars: int | None) -> Path:
    """A local I=2 GL=5 run folder of the first ``n_songs`` test-set songs (cropped to
    ``max_bars`` as `streammuse replay --max-bars` does)."""
    from streammuse.experiment.runs import RunWriter
    from streammuse.datasets.song import ONSET, Song
    from streammuse.datasets.testset import load_testset

    songs = load_testset(testset, max_bars=max_bars)[:n_songs]
    run = root / "2026-01-01-local-I2-GL5"
    writer = RunWriter(run)
    writer.write_manifest({"setting": "local", "interval": 2, "gen_len": 5, "bpm": 120.0,
                           "testset": str(testset.resolve()), "songs": [s.name for s in songs], "max_bars": max_bars,
                           "model_id": "synthetic"})
    rng = np.random.default_rng(0)
    for song in songs:
        n = song.n_ticks
        available = (rng.random(n) < 0.9).astype(int)
        staleness = np.where(available == 1, rng.integers(0, 5, n), -1)
        played = song.accompaniment[available[np.minimum(song.accompaniment[:, ONSET], n - 1)] == 1]
        ticks = [{"song": song.name, "tick": t, "available": int(a), "staleness": int(s),
                  "request_id": t // 2 if a else -1, "fresh": bool(a and s < 2)}
                 for t, (a, s) in enumerate(zip(available, staleness))]
        writer.write_song(Song(song.name, song.melody, played, song.time_signatures), 120.0, [], ticks)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--songs", type=int, default=64)
    parser.add_argument("--testset", type=Path, default=Path("testset"))
    parser.add_argument("--max-bars", type=int, default=0, help="crop songs (replay's default is 16); 0: whole")
    args = parser.parse_args()

    from streammuse.metrics.evaluate import evaluate_run
    from streammuse.metrics.fmd import SYMBOLIC_EXTRACTOR, make_extractor
    from streammuse.model.engine import StreamingEngine

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            t0 = time.perf_counter()
            run = synthetic_run(Path(tmp), args.testset, args.songs, args.max_bars or None)
            length = f"{args.max_bars}-bar" if args.max_bars else "whole"
            print(f"synthetic run of {args.songs} {length} songs built in {time.perf_counter() - t0:.1f} s: {run}")
        try:
            engine, engine_name = StreamingEngine.load(), "shipped checkpoint"
        except Exception as exc:  # no checkpoint in this checkout: a random tiny model
            engine, engine_name = StreamingEngine.random("tiny", seed=0), f"random tiny ({exc})"
        t0 = time.perf_counter()
        s = evaluate_run(run, engine=None, with_nll=False, with_fmd=False, write=False)
        t_music = time.perf_counter() - t0
        t0 = time.perf_counter()
        s = evaluate_run(run, engine=engine, with_nll=True, with_fmd=False, write=True)
        t_all = time.perf_counter() - t0
        extractor = make_extractor(SYMBOLIC_EXTRACTOR)
        t0 = time.perf_counter()
        f = evaluate_run(run, engine=None, with_nll=False, with_fmd=True, fmd_extractor=extractor, write=False)
        t_fmd = time.perf_counter() - t0 - t_music
        print(f"songs: {s['n_songs']}  CR {s['metrics']['cr']:.3f}  UR {s['metrics']['ur']:.3f}  "
              f"ISR_w {s['metrics']['isr_w']:.3f}  NLL_wavg {s['metrics']['nll_wavg']:.3f}  "
              f"FMD {f['metrics']['fmd']:.4f} [{f['fmd_extractor']}]")
        print(f"evaluate without NLL and FMD: {t_music:.1f} s")
        print(f"evaluate with NLL ({engine_name}), without FMD: {t_all:.1f} s  (target < 30 s)")
        print(f"FMD alone, {SYMBOLIC_EXTRACTOR}: {t_fmd:.1f} s  (target < 60 s)")


if __name__ == "__main__":
    main()
