"""muspy's standard metrics on hand-made parts (answers worked out by hand), and their place in
`evaluate`'s per-song table and summary and in `report --format json`."""

import json
import math

import pandas as pd
import pytest
from metrics_runs import make_run, make_testset
from typer.testing import CliRunner

from streammuse.cli.main import app
from streammuse.datasets.song import note_array
from streammuse.metrics.evaluate import evaluate_run
from streammuse.metrics.muspy_metrics import KEYS, METRICS, bar_ticks, part_metrics, song_metrics, summarize

# Two 4/4 bars (16 ticks each): C4 E4 G4 as 2-tick notes on beats 1-3 of bar one, and
# C4 E4 on beats 1 and 3 of bar two.
PART = note_array([[0, 2, 60], [4, 2, 64], [8, 2, 67], [16, 2, 60], [24, 2, 64]])


def test_pitch_class_entropy_and_scale_consistency():
    m = part_metrics(PART)
    # counts C 2, E 2, G 1: -(2 * 0.4 log2 0.4 + 0.2 log2 0.2)
    assert m["pitch_class_entropy"] == pytest.approx(-(2 * 0.4 * math.log2(0.4) + 0.2 * math.log2(0.2)))
    assert m["scale_consistency"] == 1.0  # all in C major
    off = part_metrics(note_array([[0, 4, 60], [4, 4, 61], [8, 4, 62], [12, 4, 63]]))
    assert off["scale_consistency"] == 0.75  # no major or minor scale holds C, C#, D and D# together


def test_groove_consistency_empty_beats_and_polyphony():
    m = part_metrics(PART)
    # onset patterns {0, 4, 8} and {0, 8} differ in one of 16 positions
    assert m["groove_consistency"] == pytest.approx(1 - 1 / 16)
    # the part ends at tick 26: beats 0..6; beats 3 (ticks 12-15) and 5 (20-23) have no note
    assert m["empty_beat_rate"] == pytest.approx(2 / 7)
    assert m["polyphony"] == 1.0
    # a 4-tick C4 with a 2-tick E4 on top: 2, 2, 1, 1 pitches over 4 ticks
    assert part_metrics(note_array([[0, 4, 60], [0, 2, 64]]))["polyphony"] == 1.5


def test_groove_uses_the_songs_bar():
    # 7/8 bars of 14 ticks: the same onsets {0, 4} in both bars
    part = note_array([[0, 2, 60], [4, 2, 62], [14, 2, 60], [18, 2, 62]])
    assert part_metrics(part, [(0, 7, 8)])["groove_consistency"] == 1.0
    assert part_metrics(part)["groove_consistency"] < 1.0  # read as 4/4 the bars differ
    assert bar_ticks([(0, 7, 8)], 28) == 14
    assert bar_ticks([(0, 4, 4), (8, 4, 4)], 64) == 16  # a pickup bar: still 4/4
    assert bar_ticks([(0, 3, 4), (12, 4, 4)], 20) == 12  # 3/4 covers 12 ticks, 4/4 only 8


def test_empty_part_is_nan_and_summary_skips_it():
    assert all(math.isnan(v) for v in part_metrics(note_array()).values())
    rows = [song_metrics(PART, PART), song_metrics(note_array(), None)]
    assert set(rows[0]) == set(KEYS) and len(KEYS) == 2 * len(METRICS)
    s = summarize(rows)
    assert s["polyphony_played"] == 1.0 and s["polyphony_truth"] == 1.0
    assert summarize([rows[1]])["pitch_class_entropy_truth"] is None


def test_evaluate_and_report_carry_the_muspy_metrics(tmp_path):
    testset = make_testset(tmp_path / "testset")
    # song_a played as the truth; song_b played silent
    run = make_run(tmp_path / "runs", testset, setting="offline", interval=1, gen_len=1, played={"song_b": []})
    summary = evaluate_run(run, with_nll=False, with_fmd=False)
    per_song = pd.read_parquet(run / "metrics" / "per_song.parquet").set_index("song")
    for metric in METRICS:
        assert per_song.loc["song_a", f"{metric}_played"] == per_song.loc["song_a", f"{metric}_truth"]
    assert math.isnan(per_song.loc["song_b", "polyphony_played"])
    # the truth bass lines: C3 E3 G3 C4 and D3 F#3 A3 D4, one note per 8 ticks
    assert per_song["polyphony_truth"].tolist() == [1.0, 1.0]
    assert per_song.loc["song_a", "pitch_class_entropy_truth"] == pytest.approx(1.5)  # C twice, E, G
    m = summary["muspy"]
    assert m["pitch_class_entropy_played"] == pytest.approx(1.5)  # song_a only: song_b is silent
    assert m["pitch_class_entropy_truth"] == pytest.approx(1.5)
    assert m["scale_consistency_truth"] == 1.0 and m["empty_beat_rate_truth"] == 0.0

    result = CliRunner().invoke(app, ["report", str(run), "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["pitch_class_entropy_played"] == pytest.approx(1.5) and row["polyphony_truth"] == 1.0
    assert set(KEYS) <= set(row)
