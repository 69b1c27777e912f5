"""Time tokenising all 909 POP909 songs, cold (cache cleared) and from the cache.

    .venv/bin/python bench/tokenize_pop909.py [--data ../shared/data/pop909] [--cap-stats]

Targets on the 2-core dev machine: under 60 s cold, under 5 s from the cache.
``--cap-stats`` also counts how often the 4-note cap drops notes (parses every song
once more, in this process).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from streammuse.datasets import pop909, vocab

console = Console()


def time_cold_and_cached(data: Path, workers: int) -> None:
    """Print the cold and cached load times and the corpus size."""
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        corpus = pop909.load_corpus(data, "all", cache_dir=cache, workers=workers)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pop909.load_corpus(data, "all", cache_dir=cache)
        cached_s = time.perf_counter() - t0
        # A fresh interpreter, as a training job starts: imports + key + cache read.
        code = (f"from streammuse.datasets.pop909 import load_corpus; "
                f"load_corpus({str(data)!r}, 'train', cache_dir={cache!r})")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        fresh_s = time.perf_counter() - t0
        cache_mb = sum(p.stat().st_size for p in Path(cache).glob("*.npz")) / 1e6
    table = Table(title=f"tokenising POP909 ({data})")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("songs", str(len(corpus)))
    table.add_row("skipped", str(len(corpus.skipped)))
    table.add_row("frames (2T, all songs)", f"{corpus.n_frames:,}")
    table.add_row("cache size", f"{cache_mb:.1f} MB")
    table.add_row(f"cold, {workers} processes", f"{cold_s:.1f} s")
    table.add_row("from the cache (warm process)", f"{cached_s:.2f} s")
    table.add_row("from the cache (fresh interpreter)", f"{fresh_s:.2f} s")
    console.print(table)


def cap_stats(data: Path) -> None:
    """Print how often the 4-note cap drops notes on POP909, per part."""
    from streammuse.datasets.frames import cap_frame_notes
    from streammuse.datasets.skyline import load_song
    from streammuse.datasets.song import ONSET, PITCH

    totals = {"melody": [0, 0, 0, 0], "accompaniment": [0, 0, 0, 0]}  # notes, dropped, onsets, capped onsets
    songs_with_drops = out_of_range = 0
    files = pop909.song_files(data)
    for path in files:
        song = load_song(path)
        dropped_here = 0
        for name, part in (("melody", song.melody), ("accompaniment", song.accompaniment)):
            in_range = part[(part[:, PITCH] >= vocab.MIN_PITCH) & (part[:, PITCH] <= vocab.MAX_PITCH)]
            out_of_range += len(part) - len(in_range)
            _, dropped = cap_frame_notes(in_range)
            per_onset = _counts(in_range[:, ONSET])  # Song parts hold no (onset, pitch) duplicates
            t = totals[name]
            t[0] += len(part)
            t[1] += dropped
            t[2] += len(per_onset)
            t[3] += int((per_onset > vocab.MAX_NOTES_PER_FRAME).sum())
            dropped_here += dropped
        songs_with_drops += dropped_here > 0
    table = Table(title=f"4-note cap on POP909 ({len(files)} songs)")
    for col in ("part", "notes", "dropped", "% notes", "onset frames", "frames over cap", "% frames"):
        table.add_column(col, justify="right")
    for name, (n, d, f, fc) in totals.items():
        table.add_row(name, f"{n:,}", f"{d:,}", f"{100 * d / max(n, 1):.2f}", f"{f:,}", f"{fc:,}",
                      f"{100 * fc / max(f, 1):.2f}")
    console.print(table)
    console.print(f"songs with at least one dropped note: {songs_with_drops} of {len(files)}; "
                  f"notes outside {vocab.MIN_PITCH}..{vocab.MAX_PITCH}: {out_of_range}")


def _counts(onsets: np.ndarray) -> np.ndarray:
    return np.unique(onsets, return_counts=True)[1]


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=pop909.default_data_dir())
    parser.add_argument("--workers", type=int, default=pop909.PARSE_WORKERS)
    parser.add_argument("--cap-stats", action="store_true")
    args = parser.parse_args()
    time_cold_and_cached(args.data, args.workers)
    if args.cap_stats:
        cap_stats(args.data)


if __name__ == "__main__":
    main()
