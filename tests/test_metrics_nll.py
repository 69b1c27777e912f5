"""NLL_wavg with the real engine (a random tiny model) on re-tokenised performances."""

import math

import pytest

from metrics_runs import TRUTH, make_run, make_testset
from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.vocab import VOCAB_SIZE
from streammuse.metrics.evaluate import evaluate_run, read_performance
from streammuse.metrics.nll import song_nll
from streammuse.model.engine import StreamingEngine


def test_nll_wavg_is_total_nats_over_total_tokens(tmp_path):
    engine = StreamingEngine.random("tiny", seed=0)
    run = make_run(tmp_path / "runs", make_testset(tmp_path / "testset"), model_id=engine.model_id)
    summary = evaluate_run(run, engine=engine, with_fmd=False)
    per_song = [song_nll(engine, read_performance(run / "songs" / f"{n}.mid")) for n in TRUTH]
    # every accompaniment token is scored: one note token per note plus one EOF per tick
    for name, s in zip(TRUTH, per_song):
        _, a, _ = song_to_frames(TRUTH[name])
        assert s.n_tokens == len(TRUTH[name].accompaniment) + len(a)
    expected = sum(s.nll_sum_nats for s in per_song) / sum(s.n_tokens for s in per_song)
    assert summary["metrics"]["nll_wavg"] == pytest.approx(expected)
    assert 0 < expected < 2 * math.log(VOCAB_SIZE)  # an untrained model: about ln(V) per token
    assert summary["nll_model_id"] == engine.model_id and summary["problems"] == []
