"""Hand-made test sets and run folders (docs/design.md section 5) for the metrics tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from streammuse.experiment.runs import RunWriter
from streammuse.datasets.song import Song, note_array
from streammuse.datasets.tick_grid import song_to_midi

# Two 2-bar songs: melody C4 E4 G4 C5 (8 ticks each) over a bass a fifth below.
MELODY = note_array([[0, 8, 60], [8, 8, 64], [16, 8, 67], [24, 8, 72]])
TRUTH = {
    "song_a": Song("song_a", MELODY, MELODY - [0, 0, 7]),
    "song_b": Song("song_b", MELODY + [0, 0, 2], MELODY + [0, 0, 2 - 12]),
}


def make_testset(folder: Path) -> Path:
    """A two-song test set folder."""
    for song in TRUTH.values():
        song_to_midi(song, path=folder / f"{song.name}.mid")
    return folder


class UniformEngine:
    """A stand-in model that gives every accompaniment token probability 1/4 (ln 4 nats
    each; tokens = note tokens + EOF of the accompaniment frames)."""

    model_id = "uniform-test"

    def nll(self, melody_frames, accompaniment_frames):
        n = int((np.asarray(accompaniment_frames) != 0).sum())
        return n * math.log(4), n


def make_run(root: Path, testset: Path, setting="local", interval=2, gen_len=5, played=None, ticks=None,
             songs=("song_a", "song_b"), finished=None, model_id="uniform-test") -> Path:
    """A run folder: ``played[name]`` is the accompaniment as played (default: the truth),
    ``ticks[name]`` the (available, staleness, fresh) per tick (default: all fresh)."""
    run = root / f"2026-01-01-{setting}-I{interval}-GL{gen_len}"
    writer = RunWriter(run)
    writer.write_manifest({"setting": setting, "interval": interval, "gen_len": gen_len, "bpm": 120.0,
                           "testset": str(testset), "songs": list(songs), "max_bars": None,
                           "model_id": model_id})
    for name in (songs if finished is None else finished):
        truth = TRUTH[name]
        acc = (played or {}).get(name, truth.accompaniment)
        per_tick = (ticks or {}).get(name, [(1, 0, True)] * 32)
        tick_rows = [{"song": name, "tick": t, "available": a, "staleness": s, "request_id": t if a else -1,
                      "fresh": f} for t, (a, s, f) in enumerate(per_tick)]
        writer.write_song(Song(name, truth.melody, note_array(acc)), 120.0, [], tick_rows)
    return run


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))
