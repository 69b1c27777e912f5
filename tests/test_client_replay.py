"""Replays on the sim clock with a random-weight engine: determinism, resume, offline."""

from pathlib import Path

import pandas as pd
import pytest

from streammuse.client.latency import load_profile
from streammuse.experiment import replay as rp
from streammuse.experiment.config import ReplayConfig
from streammuse.errors import StreamMuseError
from streammuse.experiment.runs import RunWriter

TESTSET = Path(__file__).resolve().parents[1] / "testset"


@pytest.fixture(scope="module")
def engine():
    from streammuse.model.engine import StreamingEngine

    return StreamingEngine.random("tiny", seed=0)


def _cfg(tmp_path, **kw) -> rp.ReplayConfig:
    base = dict(testset=TESTSET, setting="remote", clock="sim", interval=2, gen_len=5, songs=1, max_bars=1,
                out=tmp_path, seed=3)
    base.update(kw)
    return ReplayConfig(**base)


def _run(cfg, engine, progress=None) -> Path:
    songs = rp.load_songs(cfg)
    profile = rp.resolve_profile(cfg)
    writer = rp.open_run(cfg, profile, songs, "tiny-random")
    rp.replay_sim(cfg, engine, songs, writer, profile, progress)
    return writer.path


def _tables(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(path / "requests.parquet"), pd.read_parquet(path / "ticks.parquet")


def test_sim_clock_same_seed_same_event_log(tmp_path, engine):
    a = _run(_cfg(tmp_path / "a"), engine)
    b = _run(_cfg(tmp_path / "b"), engine)
    (ra, ta), (rb, tb) = _tables(a), _tables(b)
    pd.testing.assert_frame_equal(ra, rb)
    pd.testing.assert_frame_equal(ta, tb)
    for mid in sorted((a / "songs").glob("*.mid")):
        assert mid.read_bytes() == (b / "songs" / mid.name).read_bytes()
    # The remote profile's RTT (>= 148 ms) is more than a tick (125 ms): frame 0 is
    # always late, so every played frame is a backup (S(t) >= 1), and requests are late.
    assert ta.loc[ta.available == 1, "staleness"].min() >= 1
    assert set(ra.status) <= {"late", "superseded"}
    assert (ra.rtt_ms.dropna() >= 148.0).all()


def test_sim_local_profile_staleness_zero(tmp_path, engine):
    # Local: no network; the measured server model gives IL(3) of about 50 ms (sigma 18) < tau.
    path = _run(_cfg(tmp_path, setting="local", interval=1, gen_len=3), engine)
    assert len(pd.read_parquet(path / "ticks.parquet")) == 16
    reqs, ticks = _tables(path)
    assert (ticks.available == 1).all() and (ticks.staleness == 0).all() and ticks.fresh.all()
    assert set(reqs.status) == {"ok"}
    assert rp.realtime_summary(ticks) == {"isr": 1.0, "staleness": 0.0, "isr_w": 1.0}


def test_resume_after_interrupted_run(tmp_path, engine):
    # One song at a time (the paper's single-user setting): a song's events do not depend
    # on what ran before it, so a resumed run equals an uninterrupted one. (Songs that
    # share a replica, --concurrency > 1, batch with each other and cannot be equal.)
    cfg = _cfg(tmp_path / "runs", resume=True, songs=2, interval=4, concurrency=1)

    def interrupt(name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(cfg, engine, progress=interrupt)
    [folder] = (tmp_path / "runs").iterdir()
    assert len(RunWriter(folder).done_songs()) == 1
    assert _run(cfg, engine) == folder
    assert len(RunWriter(folder).done_songs()) == 2
    full = _run(_cfg(tmp_path / "full", songs=2, interval=4, concurrency=1), engine)
    for got, want in zip(_tables(folder), _tables(full)):
        pd.testing.assert_frame_equal(got.sort_values(list(got.columns[:2])).reset_index(drop=True),
                                      want.sort_values(list(want.columns[:2])).reset_index(drop=True))


def test_run_folder_layout_and_offline(tmp_path, engine):
    cfg = _cfg(tmp_path, setting="offline", interval=1, gen_len=1)
    songs = rp.load_songs(cfg)
    writer = rp.open_run(cfg, load_profile("local"), songs, "tiny-random")
    rp.replay_offline(cfg, engine, songs, writer)
    path = writer.path
    assert path.name.endswith("-offline-I1-GL1")
    manifest = writer.read_manifest()
    for key in ("setting", "interval", "gen_len", "bpm", "clock", "profile", "seed", "sampling", "model_id",
                "git_rev", "machine", "testset", "songs", "max_bars", "created", "streammuse_version"):
        assert key in manifest
    reqs, ticks = _tables(path)
    assert len(ticks) == songs[0].n_ticks and (ticks.available == 1).all() and (ticks.staleness == 0).all()
    assert (path / "songs" / f"{songs[0].name}.mid").is_file() and (path / "done" / songs[0].name).is_file()



def test_server_outage_backups_misses_and_context_resend(tmp_path, engine):
    from streammuse.client.latency import LatencyInjector
    from streammuse.client.session import SongClient
    from streammuse.client.sim import SimSong, run_simulation
    from streammuse.client.transports import CoreFront, ServerUnavailable
    from streammuse.contract import CreateSessionRequest, tau_ms
    from streammuse.core.drivers import VirtualDriver
    from streammuse.core.sessions import SessionCore
    from streammuse.datasets.frames import song_to_frames

    class Outage(CoreFront):
        """The server is down for requests 8 .. 15 and comes back without its sessions."""

        def __init__(self, driver):
            super().__init__(driver)
            self.seen = []
            self.restarted = False

        async def infer(self, session_id, request):
            self.seen.append(request)
            if 8 <= request.request_tick < 16:
                raise ServerUnavailable("down")
            if request.request_tick >= 16 and not self.restarted:
                self.restarted = True
                self.driver.core.sessions.clear()  # it came back without its sessions
            return await super().infer(session_id, request)

    [song] = rp.load_songs(_cfg(tmp_path, max_bars=2))
    m, _, _ = song_to_frames(song)
    client = SongClient(song.name, m, interval=1, gen_len=4, tau_ms=tau_ms(120))
    driver = VirtualDriver(SessionCore(engine), lambda batch: 10.0)
    front = Outage(driver)
    run_simulation([SimSong(client, LatencyInjector(load_profile("local"), 0), CreateSessionRequest())],
                   lambda: (front, driver))
    status = {r.request_tick: r.status for r in client.requests}
    # Backoff during the outage: failures at 8, 9, 11 (waited 2 ticks), 15 (waited 4);
    # the next request, 23 (waited 8), finds the session gone: failed too.
    assert [s for s in range(8, 24) if s in status] == [8, 9, 11, 15, 23]
    assert all(status[s] == "failed" for s in (8, 9, 11, 15, 23))
    ticks = {t.tick: t for t in client.tick_records()}
    # Request 7 (GL = 4) leaves backups for ticks 8..10, then misses until service resumes.
    assert [(ticks[t].available, ticks[t].request_id, ticks[t].staleness) for t in (8, 9, 10)] == [
        (1, 7, 1), (1, 7, 2), (1, 7, 3)]
    assert ticks[11].available == 0
    # After the unknown session, the next request carries the context and is answered.
    resent = [r for r in front.seen if r.context is not None]
    assert resent and len(resent[0].context.melody) == resent[0].request_tick
    after = [r for r in client.requests if r.request_tick >= resent[0].request_tick]
    assert after[0].status == "ok"
    assert ticks[len(ticks) - 1].available == 1


def test_resume_finds_the_run_by_its_saved_settings(tmp_path, engine):
    from streammuse.errors import StreamMuseError

    gl15 = _run(_cfg(tmp_path, interval=4, gen_len=15), engine)
    # A folder-name glob for GL = 1 would have matched "...-I4-GL15": the settings do not.
    gl1 = _run(_cfg(tmp_path, interval=4, gen_len=1, resume=True), engine)
    assert gl1 != gl15 and gl1.name.endswith("-I4-GL1")
    # Same pair, another BPM: --resume refuses the folder instead of mixing runs.
    with pytest.raises(StreamMuseError, match="other settings.*bpm"):
        _run(_cfg(tmp_path, interval=4, gen_len=15, bpm=90.0, resume=True), engine)
    assert _run(_cfg(tmp_path, interval=4, gen_len=15, resume=True), engine) == gl15


def test_per_song_servers_on_one_timeline_equal_song_by_song_replay(tmp_path, engine):
    """Issue 20's single-user mode: songs played together on one virtual timeline, each on
    its own virtual replica, give each song exactly the events of playing it alone."""
    together = _run(_cfg(tmp_path / "together", songs=3, servers="per-song", concurrency=3), engine)
    alone = _run(_cfg(tmp_path / "alone", songs=3, servers="shared", concurrency=1), engine)
    for got, want in zip(_tables(together), _tables(alone)):
        key = list(got.columns[:2])
        pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True))
    shared = _run(_cfg(tmp_path / "shared", songs=3, servers="shared", concurrency=3), engine)
    assert not _tables(shared)[0]["queue_ms"].equals(_tables(alone)[0]["queue_ms"])  # one replica: songs queue


def test_a_two_configuration_sweep_runs_as_ray_tasks(tmp_path):
    """Issue 20: configurations fan out as Ray tasks and come back as run folders equal to
    the same configurations run in this process."""
    from streammuse.experiment.sweep import run_sweep_on_ray

    configs = [_cfg(tmp_path / "ray", interval=i, gen_len=gl) for i, gl in ((1, 3), (2, 5))]
    paths = run_sweep_on_ray(configs, n_songs=1, random_weights=True, evaluate=True)
    assert [p.name.split("-", 3)[-1] for p in paths] == ["remote-I1-GL3", "remote-I2-GL5"]
    assert all((p / "metrics" / "summary.json").is_file() for p in paths)  # scored in the task
    from streammuse.model.engine import StreamingEngine

    here = StreamingEngine.random("tiny", seed=3)
    for cfg, path in zip(configs, paths):
        local = _run(_cfg(tmp_path / "here", interval=cfg.interval, gen_len=cfg.gen_len), here)
        for got, want in zip(_tables(path), _tables(local)):
            pd.testing.assert_frame_equal(got, want)


def test_a_sweep_in_worker_processes_equals_this_process_and_resumes(tmp_path):
    """The sweep without Ray (a GPU box has none): the same task body in spawned worker
    processes; the run folders equal the same configurations run here, the manifest says
    where the engine ran, and a second call resumes instead of running them again."""
    import json

    from streammuse.experiment.sweep import run_sweep_in_processes
    from streammuse.model.engine import StreamingEngine

    configs = [_cfg(tmp_path / "procs", interval=i, gen_len=gl, resume=True) for i, gl in ((1, 3), (2, 5))]
    seen: list[str] = []
    paths = run_sweep_in_processes(configs, n_songs=1, workers=2, random_weights=True,
                                   on_done=lambda cfg, path: seen.append(path.name))
    assert sorted(p.name.split("-", 3)[-1] for p in paths) == ["remote-I1-GL3", "remote-I2-GL5"]
    assert json.loads((paths[0] / "manifest.json").read_text())["engine_device"] == "cpu float32"
    here = StreamingEngine.random("tiny", seed=3)
    for cfg, path in zip(configs, paths):
        local = _run(_cfg(tmp_path / "here", interval=cfg.interval, gen_len=cfg.gen_len), here)
        for got, want in zip(_tables(path), _tables(local)):
            pd.testing.assert_frame_equal(got, want)
    mtimes = [(p / "manifest.json").stat().st_mtime for p in paths]
    assert run_sweep_in_processes(configs, n_songs=1, workers=2, random_weights=True) == paths  # resumed: none ran
    assert [(p / "manifest.json").stat().st_mtime for p in paths] == mtimes
    with pytest.raises(StreamMuseError, match="--workers"):
        run_sweep_in_processes(configs, n_songs=1, workers=0)


def test_a_song_that_cannot_start_fails_alone_and_resume_plays_it(tmp_path, engine, monkeypatch):
    """Issue 13: an unreachable server when one song starts fails that song alone (named in
    the manifest, no done-marker); the songs that played are kept; --resume finishes it."""
    from streammuse.client import wall
    from streammuse.client.transports import InProcessTransport, ServerUnavailable
    from streammuse.core.sessions import SessionCore

    monkeypatch.setattr(wall, "START_RETRY_S", 0.3)

    class DownForSeed1000(InProcessTransport):
        def create_session(self, request):
            if request.seed == 1001:  # the second song (seed * 1000 + index, seed 1)
                raise ServerUnavailable("connection refused")
            return super().create_session(request)

    cfg = _cfg(tmp_path, clock="wall", setting="local", songs=2, interval=2, gen_len=4, seed=1, resume=True)
    songs, profile = rp.load_songs(cfg), rp.resolve_profile(cfg)
    path, _ = rp.run_pair(cfg, songs, profile, transport=DownForSeed1000(SessionCore(engine)), model_id="x")
    manifest = RunWriter(path).read_manifest()
    assert RunWriter(path).done_songs() == {songs[0].name}
    assert manifest["failed_songs"] == {songs[1].name: "server unreachable when the song started"}
    again, _ = rp.run_pair(cfg, songs, profile, transport=InProcessTransport(SessionCore(engine)), model_id="x")
    assert again == path and RunWriter(path).done_songs() == {s.name for s in songs}
    assert RunWriter(path).read_manifest().get("failed_songs") == {}


def test_report_says_which_server_time_each_table_used(tmp_path, engine):
    import json

    from typer.testing import CliRunner

    from streammuse.cli.main import app

    _run(_cfg(tmp_path, interval=2, gen_len=5), engine)
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--format", "json", "--no-nll", "--no-fmd"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert rows[0]["server_time"].startswith("modelled: profile remote (paper: paper section V-B")
    md = CliRunner().invoke(app, ["report", str(tmp_path), "--format", "markdown", "--no-nll", "--no-fmd"]).stdout
    assert "server time: modelled: profile remote (paper:" in md


def test_a_markdown_report_holds_the_table_not_what_the_command_did(tmp_path, engine):
    # Issue 32: "evaluated now (no metrics yet)" was pasted into the docs with the tables.
    from typer.testing import CliRunner

    from streammuse.cli.main import app

    _run(_cfg(tmp_path, interval=2, gen_len=5), engine)
    first = CliRunner().invoke(app, ["report", str(tmp_path), "--format", "markdown", "--no-nll", "--no-fmd"])
    assert first.exit_code == 0, first.output
    assert "evaluated now (no metrics yet)" in first.stderr and "evaluated now" not in first.stdout
    again = CliRunner().invoke(app, ["report", str(tmp_path), "--format", "markdown", "--no-nll", "--no-fmd"])
    assert again.stdout == first.stdout and "evaluated now" not in again.stderr
