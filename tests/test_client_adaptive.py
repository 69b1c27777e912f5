"""Issue 17: drifting latency, and the client that re-plans (I, GL) while it drifts."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streammuse.client.adaptive import AdaptiveSettings, Adapter, RttEstimator, expected_isr_w
from streammuse.client.drift import DriftEvent, drift_at
from streammuse.client.latency import DRIFT_PROFILES, LatencyInjector, load_profile, profile_from_dict
from streammuse.experiment import replay as rp
from streammuse.experiment.config import ReplayConfig
from streammuse.model.silent import SilentEngine

TESTSET = Path(__file__).resolve().parents[1] / "testset"


def _profile_file(tmp_path, drift: list[dict], name="moving") -> str:
    data = {"name": name, "network": {"nu_ms": 20.0, "x_min_ms": 4.0, "alpha": 3.0}, "server_jitter_ms": 1.0,
            "server_model": {"a": 0.05, "b": 2.0, "c": 2.0, "sigma_ms": 1.0}, "drift": drift}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return str(path)


def _run(tmp_path, profile: str, adaptive: AdaptiveSettings | None, engine=None, songs=2, max_bars=24,
         pair=(1, 2), seed=0, clock="sim", transport=None):
    cfg = ReplayConfig(testset=TESTSET, setting="remote", profile=profile, interval=pair[0], gen_len=pair[1],
                       clock=clock, server_time="modelled", servers="per-song", songs=songs, max_bars=max_bars,
                       seed=seed, out=tmp_path, concurrency=songs, adaptive=adaptive)
    songs_, prof = rp.load_songs(cfg), rp.resolve_profile(cfg)
    engine = engine or SilentEngine()
    path, _ = rp.run_pair(cfg, songs_, prof, engine=engine, transport=transport, model_id="test")
    tables = {t: pd.read_parquet(path / f"{t}.parquet") for t in ("requests", "ticks")}
    tables["switches"] = pd.read_parquet(path / "switches.parquet") if (path / "switches.parquet").exists() else None
    return path, tables


# -- drift ---------------------------------------------------------------------------------

def test_drift_events_step_ramp_bursts_and_contention():
    step = DriftEvent(start_s=16.0, network_add_ms=180.0)
    assert drift_at((step,), 15.99).network_add_ms == 0.0 and drift_at((step,), 16.0).network_add_ms == 180.0
    ramp = DriftEvent(start_s=8.0, ramp_s=16.0, network_add_ms=180.0)
    assert drift_at((ramp,), 16.0).network_add_ms == pytest.approx(90.0)
    assert drift_at((ramp,), 40.0).network_add_ms == pytest.approx(180.0)
    bursts = DriftEvent(start_s=5.0, duration_s=1.0, every_s=10.0, network_add_ms=300.0)
    assert [drift_at((bursts,), t).network_add_ms for t in (4.9, 5.5, 6.1, 15.0, 25.99, 26.0)] == \
        [0.0, 300.0, 0.0, 300.0, 300.0, 0.0]
    busy = DriftEvent(start_s=12.0, duration_s=5.0, server_scale=3.0)
    both = drift_at((busy, step), 16.5)
    assert both.server_scale == 3.0 and both.network_add_ms == 180.0
    assert drift_at((busy,), 17.0).server_scale == 1.0


def test_injector_reads_drift_at_send_time_and_contention_holds_the_answer():
    profile = load_profile("drift-contention")
    inj = LatencyInjector(profile, seed=1)
    quiet, busy = inj.draw(send_ms=1000.0), inj.draw(send_ms=13_000.0)
    assert quiet.server_scale == 1.0 and busy.server_scale == 3.0
    # the answer is held back by (k - 1) x the server's reported time
    assert busy.response_delay_ms(50.0) == pytest.approx(busy.response_ms + busy.server_jitter_ms + 100.0)
    step = LatencyInjector(load_profile("drift-step"), seed=2)
    before = [step.draw(1000.0).network_ms for _ in range(200)]
    after = [step.draw(17_000.0).network_ms for _ in range(200)]
    assert min(after) - 180.0 >= 20.0 - 1e-9 and max(before) < 100.0
    assert np.median(after) - np.median(before) == pytest.approx(180.0, abs=3.0)


def test_shipped_drift_profiles_load_with_their_source():
    for name in DRIFT_PROFILES:
        p = load_profile(name)
        assert p.source["kind"] == "scenario" and p.drift, name
    with pytest.raises(Exception, match="drift.0.server_scale"):
        profile_from_dict({"name": "x", "drift": [{"start_s": 1, "server_scale": 0.5}]})


# -- the estimate and the two rules ----------------------------------------------------------

def test_expected_isr_w_matches_the_buffer_by_hand():
    fast = np.ones(16)  # every answer within one tick
    assert expected_isr_w(fast, 1, 2) == 1.0
    assert expected_isr_w(fast, 2, 4) == pytest.approx((1 + 31 / 32) / 2)
    slow = np.array([0.0] + [1.0] * 15)  # every answer after 1.6 ticks: frame 0 always late
    assert expected_isr_w(slow, 1, 2) == pytest.approx(31 / 32)  # plays at S = 1, C1 notwithstanding
    assert expected_isr_w(slow, 2, 4) == pytest.approx((30 / 32 + 31 / 32) / 2)
    half = np.array([0.5] * 16)  # half of the answers in time for frame 0
    assert expected_isr_w(half, 1, 2) == pytest.approx(0.5 + 0.25 * 31 / 32)


def test_estimator_moves_each_rtt_to_the_gl_asked_by_the_server_time_per_tick():
    est = RttEstimator(window=4)
    for gl, rtt, srv in ((2, 40.0, 20.0), (4, 60.0, 40.0), (2, 42.0, 20.0), (4, 61.0, 40.0)):
        est.add(gl, rtt, srv)
    # 10 ms per generated tick: every sample is 20 ms of network + 10 ms x GL
    assert list(est.rtt_ms(3)) == pytest.approx([50.0, 50.0, 51.0, 52.0])
    assert est.f95_ms(3) == pytest.approx(np.quantile([20.0, 20.0, 21.0, 22.0], 0.95) + 30.0)


@pytest.mark.parametrize("rule", ["isr_w", "equation3"])
def test_a_step_in_rtt_moves_the_client_up_within_a_few_ticks_and_back_after(tmp_path, rule):
    # +300 ms (2.4 ticks at 120 BPM) from 8 s to 20 s: (1, 2) cannot play through it.
    profile = _profile_file(tmp_path, [{"start_s": 8.0, "duration_s": 12.0, "network_add_ms": 300.0}])
    _, t = _run(tmp_path, profile, AdaptiveSettings(rule=rule))
    ticks = t["ticks"]
    for song, tk in ticks.groupby("song"):
        pair = tk.set_index("tick")[["interval", "gen_len"]].apply(tuple, axis=1)
        i, gl = pair[64 + 8]  # the step reaches requests sent from tick 64
        assert gl >= i + 2, pair[60:80].tolist()  # its backup covers a 2.4-tick trip (frame S = I + 1)
        if len(tk) > 160 + 200:  # the 24-bar song: the RTT falls at tick 160
            during = max(pair[64 + 8:160])
            # back once 8 bars of fast answers (recovery_ticks) and a dwell have passed
            assert pair[160 + 200] < during, (during, pair[160:].unique())
    assert ticks.available.mean() > 0.97  # the step costs a few ticks, not the rest of the song
    assert (t["switches"].tick >= 0).all()


def test_bursts_do_not_make_the_pair_flap(tmp_path):
    _, t = _run(tmp_path, "drift-bursts", AdaptiveSettings(), songs=2, max_bars=24)
    sw = t["switches"]
    for song, s in sw.groupby("song"):  # bursts at 5, 15, 25, 35, 45 s: ticks 40, 120, 200, 280, 360
        first_burst = s[(s.tick >= 40) & (s.rt95_ms > 300)]
        assert len(first_burst) == 1 and first_burst.tick.iloc[0] <= 40 + 8, s
        assert (s.tick <= first_burst.tick.iloc[0]).all(), s  # then it keeps the backup: no flapping
    ticks = t["ticks"]
    changes = (ticks.groupby("song")[["interval", "gen_len"]].diff().abs().sum(axis=1) > 0).sum()
    assert changes == len(t["switches"])  # the pair in force changes exactly at the logged switches


def test_an_adaptive_run_replays_identically_for_a_seed(tmp_path):
    _, a = _run(tmp_path / "a", "drift-bursts", AdaptiveSettings(), seed=4)
    _, b = _run(tmp_path / "b", "drift-bursts", AdaptiveSettings(), seed=4)
    for key in ("requests", "ticks", "switches"):
        pd.testing.assert_frame_equal(a[key], b[key])
    assert len(a["switches"]) >= 1


def test_timing_only_engine_gives_the_same_tick_log_as_the_model(tmp_path):
    from streammuse.model.engine import StreamingEngine

    real = StreamingEngine.random("tiny", seed=0)
    _, a = _run(tmp_path / "a", "drift-contention", AdaptiveSettings(), engine=real, max_bars=6, seed=2)
    _, b = _run(tmp_path / "b", "drift-contention", AdaptiveSettings(), engine=SilentEngine(), max_bars=6, seed=2)
    cols = ["song", "tick", "available", "staleness", "request_id", "fresh", "interval", "gen_len"]
    pd.testing.assert_frame_equal(a["ticks"][cols], b["ticks"][cols])
    assert a["requests"]["status"].tolist() == b["requests"]["status"].tolist()


def test_fixed_pair_runs_log_their_pair_and_no_switches(tmp_path):
    path, t = _run(tmp_path, "drift-step", None, songs=1, max_bars=2, pair=(2, 5))
    assert set(zip(t["ticks"].interval, t["ticks"].gen_len)) == {(2, 5)}
    assert set(t["requests"].interval) == {2} and t["requests"].rt95_est_ms.isna().all()
    assert t["switches"] is None and json.loads((path / "manifest.json").read_text())["adaptive"] is None


def test_wall_clock_client_adapts_too(tmp_path):
    from streammuse.client.transports import InProcessTransport
    from streammuse.core.sessions import SessionCore

    profile = _profile_file(tmp_path, [{"start_s": 1.5, "network_add_ms": 300.0}])
    path, t = _run(tmp_path, profile, AdaptiveSettings(min_samples=4), songs=1, max_bars=3, clock="wall",
                   transport=InProcessTransport(SessionCore(SilentEngine())))
    # Real time: a slow start on a busy machine may move the pair earlier too.
    after = t["ticks"][t["ticks"].tick >= 12 + 12]  # the step reaches requests sent from 1.5 s (tick 12)
    assert len(t["switches"]) >= 1 and (after.gen_len >= after.interval + 2).all()
    late = t["requests"][t["requests"].send_ms >= 1500]
    assert (late.rtt_ms.dropna() >= 300.0).all()
    assert json.loads((path / "manifest.json").read_text())["adaptive"]["rule"] == "isr_w"


def test_adaptive_offline_is_refused():
    from streammuse.errors import StreamMuseError

    with pytest.raises(StreamMuseError, match="offline"):
        ReplayConfig(testset=TESTSET, setting="offline", adaptive=AdaptiveSettings()).validate()


def test_adapter_waits_for_enough_answers():
    a = Adapter("x", tau_ms=125.0, settings=AdaptiveSettings(min_samples=3))
    a.add(2, 400.0, 5.0, 7)
    a.add(2, 400.0, 5.0, 8)
    assert a.decide(10, 1, 2) is None and math.isnan(Adapter("y", 125.0).rt95_ms(2))
    a.add(2, 400.0, 5.0, 9)
    assert a.decide(11, 1, 2) is not None


def test_report_gives_an_adaptive_run_its_own_row_with_the_pairs_it_used(tmp_path):
    from typer.testing import CliRunner

    from streammuse.cli.main import app

    _run(tmp_path, "drift-step", AdaptiveSettings(), songs=1, max_bars=16)
    _run(tmp_path, "drift-step", None, songs=1, max_bars=16)
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--format", "json", "--no-nll", "--no-fmd",
                                      "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["label"], r["table"]) for r in rows] == [("(1, 2)", "remote, profile drift-step"),
                                                       ("adaptive from (1, 2)", "remote, profile drift-step")]
    fixed, adaptive = rows
    assert fixed["pairs"] == "" and adaptive["adaptive"] is True
    # the step at 16 s (tick 128) of this 16-bar song: the pair in force changes once or twice
    shares = {(int(i), int(g)): float(p) for i, g, p in re.findall(r"\((\d+), (\d+)\) ([\d.]+) %", adaptive["pairs"])}
    assert (1, 2) in shares and len(shares) >= 2 and sum(shares.values()) == pytest.approx(100.0, abs=0.2)
    assert re.search(r"; \d+\.\d switches per song$", adaptive["pairs"])
    assert sorted(p.name for p in (tmp_path / "plots").glob("adaptive-*.png")) == \
        [f"adaptive-{Path(adaptive['run']).name}-accomontage3_001.png"]


def test_replay_cli_adaptive_flag(tmp_path):
    from typer.testing import CliRunner

    from streammuse.cli.main import app

    result = CliRunner().invoke(app, ["replay", str(TESTSET), "--clock", "sim", "--setting", "remote", "--profile",
                                      "drift-bursts", "--songs", "1", "--max-bars", "2", "-i", "1", "-g", "2",
                                      "--adaptive", "--random-weights", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.glob("*-remote-adaptive-I1-GL2")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["adaptive"]["rule"] == "isr_w" and manifest["profile"]["name"] == "drift-bursts"
    assert (run / "switches.parquet").is_file() and "adaptive" in result.output
    bad = CliRunner().invoke(app, ["replay", str(TESTSET), "--setting", "offline", "--adaptive"])
    assert bad.exit_code == 2 and "offline" in bad.output


def test_a_request_that_timed_out_counts_as_a_slow_answer():
    from streammuse.client.session import SongClient
    from streammuse.datasets.frames import empty_frames

    frames = empty_frames(64)
    client = SongClient("x", frames, 1, 2, 125.0, adapter=Adapter("x", 125.0, AdaptiveSettings(min_samples=2)))
    recs = []
    for tick in range(-1, 3):
        recs += [rec for rec, _ in client.on_tick(tick, tick * 125.0)]
    client.on_error(recs[0], recs[0].send_ms + 3.0, unknown_session=False)  # refused at once: no RTT sample
    assert len(client.adapter.estimate) == 0
    for rec in recs[1:3]:  # gave up at the deadline: RTT >= 250 ms
        client.on_error(rec, rec.send_ms + 250.0, unknown_session=False, timed_out=True)
    assert len(client.adapter.estimate) == 2 and client.adapter.rt95_ms(2) >= 250.0
    assert client.adapter.decide(3, 1, 2) is not None  # (1, 2) cannot play answers that slow


def test_requests_given_up_do_not_make_gl_look_free():
    # Issue 33: on a server too slow to answer, most requests time out; counted with a
    # server time of 0 they pulled s_hat to 0, so a GL 16 looked as cheap as a GL 5.
    est = RttEstimator(window=8)
    for k in range(3):
        est.add(5, 400.0 + k, 250.0)  # answered: 50 ms of compute per generated tick
    for k in range(5):
        est.add(5, 625.0, math.nan)  # given up at the deadline: slow, but no server time
    assert est.f95_ms(16) - est.f95_ms(5) == pytest.approx(11 * 50.0)
    assert est.f95_ms(5) >= 625.0  # the waits still count as slow answers


def test_a_shared_virtual_replica_replays_identically(tmp_path):
    # Each batch's modelled time is drawn from a seed of its content; keyed by the random
    # half of a session id, the draw (and every RTT after it) changed from run to run.
    profile = tmp_path / "busy.json"
    profile.write_text(json.dumps({"name": "busy", "network": {"nu_ms": 148.0, "x_min_ms": 5.0, "alpha": 4.0},
                                   "server_jitter_ms": 1.0,
                                   "server_model": {"a": 0.0, "b": 20.0, "c": 10.0, "sigma_ms": 2.0, "batch_slope": 0.5}}))
    runs = []
    for k in range(2):
        cfg = ReplayConfig(testset=TESTSET, setting="remote", profile=str(profile), interval=2, gen_len=5, clock="sim",
                           server_time="modelled", servers="shared", songs=4, max_bars=4, seed=0,
                           out=tmp_path / str(k), concurrency=4)
        path, _ = rp.run_pair(cfg, rp.load_songs(cfg), rp.resolve_profile(cfg), engine=SilentEngine(), model_id="test")
        runs.append(pd.read_parquet(path / "requests.parquet"))
    assert (runs[0].inference_ms > 0).sum() > 20 and runs[0].queue_ms.max() > 50.0  # batches of several songs queue
    pd.testing.assert_frame_equal(runs[0], runs[1])


def _answers(adapter, pair, rtt_ms, compute_ms, first_tick=0, n=16):
    interval, gen_len = pair
    for k in range(n):
        adapter.add(gen_len, rtt_ms + (k % 4), compute_ms, first_tick + k * interval)


def test_a_shared_server_is_not_asked_for_more_than_it_has_room_for():
    # Issue 33, as measured through the app (four sessions on one CPU replica, remote
    # network): at (2, 5) an answer took 290 ms, 94 of them compute. The old rule moved
    # to (1, 5) for fresher frames; at I = 1 every session meets the others in every
    # batch, the compute grew to 240 ms, RTTs grew, and GL climbed to 16: the collapse.
    shared = Adapter("x", 125.0)
    _answers(shared, (2, 5), 290.0, 94.0)
    choice = shared.decide(40, 2, 5)
    new = choice or (2, 5)
    assert new[0] >= 2, choice  # (1, 5) would fill 19 x 5 / 125 x 2 = 1.5 of the server
    assert shared.utilisation(*new, 2) <= shared.settings.max_utilisation
    # A fast server (the paper's GPU, 2 ms a tick) still gets the fresher pair.
    fast = Adapter("y", 125.0)
    _answers(fast, (2, 5), 200.0, 10.0)
    assert fast.decide(40, 2, 5)[0] == 1


def test_a_pair_that_overfills_the_server_is_left_at_once():
    adapter = Adapter("x", 125.0)
    _answers(adapter, (1, 5), 420.0, 240.0)  # 48 ms a tick at I = 1: rho 1.9
    new = adapter.decide(40, 1, 5)
    assert new is not None and adapter.switches[-1].reason == "load"
    assert adapter.utilisation(*new, 1) <= adapter.settings.max_utilisation and new[1] / new[0] < 5
