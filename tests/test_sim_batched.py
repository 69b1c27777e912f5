"""Issue 20's speed-up: per-song virtual replicas whose batches run in one engine call
(``core.drivers.DeferredCompute``) give every song the events and the tokens of the
unbatched run; the manifest says which engine calls a run made."""

from pathlib import Path

import pandas as pd
import pytest

from streammuse.core.drivers import DeferredCompute
from streammuse.core.sessions import Batch, SessionCore
from streammuse.errors import StreamMuseError
from streammuse.experiment import replay as rp
from streammuse.experiment.config import ReplayConfig
from streammuse.experiment.runs import RunWriter

TESTSET = Path(__file__).resolve().parents[1] / "testset"


@pytest.fixture(scope="module")
def engine():
    from streammuse.model.engine import StreamingEngine

    return StreamingEngine.random("tiny", seed=0)


def _cfg(tmp_path: Path, **kw) -> ReplayConfig:
    base = dict(testset=TESTSET, clock="sim", songs=3, max_bars=1, seed=5, out=tmp_path, servers="per-song",
                concurrency=3)
    base.update(kw)
    return ReplayConfig(**base)


def _run(cfg: ReplayConfig, engine, monkeypatch, batch_engine=None) -> tuple[Path, list[int]]:
    """The run folder, and the size of every engine call it made."""
    sizes: list[int] = []
    infer_batch = engine.infer_batch

    def counted(requests):
        sizes.append(len(requests))
        return infer_batch(requests)

    monkeypatch.setattr(engine, "infer_batch", counted)
    songs, profile = rp.load_songs(cfg), rp.resolve_profile(cfg)
    writer = rp.open_run(cfg, profile, songs, "tiny-random")
    rp.replay_sim(cfg, engine, songs, writer, profile, batch_engine=batch_engine)
    monkeypatch.setattr(engine, "infer_batch", infer_batch)
    return writer.path, sizes


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(list(table.columns[:2])).reset_index(drop=True)


@pytest.mark.parametrize("setting, interval, gen_len", [("remote", 1, 3), ("local-server", 2, 5)])
def test_batched_per_song_replicas_give_the_unbatched_events_and_tokens(tmp_path, engine, monkeypatch,
                                                                       setting, interval, gen_len):
    cfg = _cfg(tmp_path / "batched", setting=setting, interval=interval, gen_len=gen_len)
    batched, batched_calls = _run(cfg, engine, monkeypatch)
    alone, alone_calls = _run(_cfg(tmp_path / "alone", setting=setting, interval=interval, gen_len=gen_len),
                              engine, monkeypatch, batch_engine=False)
    for table in ("requests.parquet", "ticks.parquet"):
        pd.testing.assert_frame_equal(_sorted(pd.read_parquet(batched / table)), _sorted(pd.read_parquet(alone / table)))
    midis = sorted((alone / "songs").glob("*.mid"))
    assert len(midis) == 3
    for mid in midis:  # the played accompaniment: the same tokens
        assert (batched / "songs" / mid.name).read_bytes() == mid.read_bytes()
    # The same requests were computed, in far fewer engine calls.
    assert set(alone_calls) == {1} and sum(batched_calls) == len(alone_calls)
    assert len(batched_calls) < len(alone_calls) / 2 and max(batched_calls) == 3
    assert RunWriter(batched).read_manifest()["engine_calls"].startswith("batched across songs")
    assert RunWriter(alone).read_manifest()["engine_calls"] == "one engine call per replica batch"


def test_measured_server_time_keeps_one_engine_call_per_replica(tmp_path, engine, monkeypatch):
    # A measured batch lasts its own compute time (the song alone on its server): the
    # engine is not batched across songs, and asking for it is refused.
    path, sizes = _run(_cfg(tmp_path / "m", setting="remote", songs=2, max_bars=1, interval=4, server_time="measured"),
                       engine, monkeypatch)
    assert set(sizes) == {1}
    assert RunWriter(path).read_manifest()["engine_calls"] == "one engine call per replica batch"
    with pytest.raises(StreamMuseError, match="per-song and --server-time modelled"):
        _run(_cfg(tmp_path / "x", setting="remote", songs=2, max_bars=1, server_time="measured"),
             engine, monkeypatch, batch_engine=True)


def test_deferred_compute_needs_one_engine_and_runs_nothing_when_empty(engine):
    deferred = DeferredCompute()
    deferred.run()
    assert deferred.sizes == []
    deferred.add(SessionCore(engine), Batch([], [], [], 0.0))
    with pytest.raises(ValueError, match="share one engine"):
        deferred.add(SessionCore(object()), Batch([], [], [], 0.0))
