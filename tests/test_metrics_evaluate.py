"""`evaluate_run` over hand-made run folders, and NLL_wavg weighting."""

import json
import math

import pandas as pd
import pytest

from metrics_runs import TRUTH, UniformEngine, make_run, make_testset
from streammuse.errors import StreamMuseError
from streammuse.metrics.evaluate import evaluate_run
from streammuse.metrics.nll import SongNll, nll_wavg


def test_nll_wavg_weights_songs_by_tokens():
    # 10 tokens at 1 nat and 30 tokens at 2 nats: (10 + 60) / 40, not the song mean 1.5
    assert nll_wavg([SongNll(10.0, 10), SongNll(60.0, 30)]) == pytest.approx(70 / 40)
    assert math.isnan(nll_wavg([])) and math.isnan(nll_wavg([SongNll(0.0, 0)]))


@pytest.fixture
def testset(tmp_path):
    return make_testset(tmp_path / "testset")


def test_played_truth_scores_perfect_music_and_known_system_metrics(tmp_path, testset):
    # song_a: all fresh; song_b: 8 misses then staleness 2 on 24 ticks
    ticks = {"song_b": [(0, -1, False)] * 8 + [(1, 2, False)] * 24}
    run = make_run(tmp_path / "runs", testset, ticks=ticks)
    s = evaluate_run(run, engine=UniformEngine())
    m = s["metrics"]
    assert (m["cr"], m["ur"], m["jsd_pitch"], m["jsd_onset"]) == (1.0, 0.0, 0.0, 0.0)
    assert m["fmd"] == pytest.approx(0.0, abs=1e-6) and s["fmd_extractor"] == "streammuse-symbolic-v1"
    assert m["isr"] == pytest.approx(56 / 64)
    assert m["staleness"] == pytest.approx(48 / 56)
    assert m["isr_w"] == pytest.approx((32 + 24 * 30 / 32) / 64)
    assert m["nll_wavg"] == pytest.approx(math.log(4))
    assert s["n_songs"] == s["n_songs_expected"] == 2 and s["problems"] == []
    per_song = pd.read_parquet(run / "metrics" / "per_song.parquet").set_index("song")
    assert per_song.loc["song_b", "isr"] == pytest.approx(0.75) and per_song.loc["song_a", "isr_w"] == 1.0
    assert json.loads((run / "metrics" / "summary.json").read_text())["metrics"]["cr"] == 1.0


def test_silent_performance_is_unsupported_and_offline_has_no_system_metrics(tmp_path, testset):
    run = make_run(tmp_path / "runs", testset, setting="offline", interval=1, gen_len=1,
                   played={"song_a": [], "song_b": []})
    s = evaluate_run(run, engine=UniformEngine(), with_fmd=False)
    assert s["metrics"]["ur"] == 1.0 and s["metrics"]["cr"] == 0.0
    assert s["metrics"]["isr"] is None and s["metrics"]["jsd_pitch"] is None  # nothing played: NaN -> null


def test_missing_songs_are_named_and_counted(tmp_path, testset):
    run = make_run(tmp_path / "runs", testset, finished=["song_a"])
    s = evaluate_run(run, engine=UniformEngine(), with_fmd=False)
    assert (s["n_songs"], s["n_songs_expected"]) == (1, 2)
    assert any("song_b" in p for p in s["problems"])
    assert s["metrics"]["isr"] == 1.0  # over song_a's ticks only


def test_other_model_and_missing_testset_are_reported(tmp_path, testset):
    run = make_run(tmp_path / "runs", tmp_path / "nowhere", model_id="another-model")
    s = evaluate_run(run, engine=UniformEngine(), with_fmd=False)
    assert any("another-model" in p for p in s["problems"])
    assert any("not found" in p for p in s["problems"]) and s["metrics"]["jsd_pitch"] is None
    assert s["metrics"]["cr"] == 1.0  # the performance holds its own melody


def test_not_a_run_folder(tmp_path):
    with pytest.raises(StreamMuseError, match="no manifest.json"):
        evaluate_run(tmp_path)
    with pytest.raises(StreamMuseError, match="no such run folder"):
        evaluate_run(tmp_path / "absent")
