"""What a context-window slide costs one session (issue 13): I = 1, GL = 3, one torch thread.

A session's cache holds W frames (``max_frames``); when a request would pass W the engine
rebuilds it from the last ``rows_kept_on_slide`` rows (W - W/4), once every W/8 ticks.
This plays the longest test song's melody through one session tick by tick and prints the
median request time, each slide's request time and the local encoder's share of it.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/window_slide.py [--ticks 400]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.testset import load_testset, midi_files
from streammuse.model.engine import StreamingEngine

ROOT = Path(__file__).resolve().parents[1]
GEN_LEN = 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(1)
    engine = StreamingEngine.load()
    songs = load_testset(ROOT / "testset", songs=sorted(p.stem for p in midi_files(ROOT / "testset")))
    melody, _, _ = song_to_frames(max(songs, key=lambda song: song.n_ticks))
    coder = engine.runner.coder  # the prefill of a slide encodes its rows here
    encode, spent = coder.encode, [0.0]

    def timed_encode(*a, **k):
        t = time.perf_counter()
        out = encode(*a, **k)
        spent[0] += time.perf_counter() - t
        return out

    coder.encode = timed_encode
    state, rows, slides = engine.new_session(), [], []
    for s in range(1, min(args.ticks, len(melody)) + 1):
        spent[0], t, window = 0.0, time.perf_counter(), state.win_start
        engine.infer(state, s, melody[s - 1 : s], GEN_LEN)
        rows.append((s, (time.perf_counter() - t) * 1000, spent[0] * 1000))
        if state.win_start != window:
            slides.append(rows[-1])
    cfg = engine.config
    print(f"W = {cfg.max_frames} rows, {cfg.rows_kept_on_slide} kept on a slide; {len(rows)} requests, "
          f"median {np.median([r[1] for r in rows]):.1f} ms (local encoder {np.median([r[2] for r in rows]):.1f} ms), "
          f"p95 {np.percentile([r[1] for r in rows], 95):.1f} ms")
    for s, ms, enc in slides:
        print(f"  slide at request tick {s}: {ms:.1f} ms (local encoder {enc:.1f} ms)")


if __name__ == "__main__":
    main()
