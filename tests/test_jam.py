"""The jam page's server side: takes -> run folders, the page's routes, the embedded
server, `jam --import`. (The page itself runs in a browser: tests/browser, `make test-browser`.)"""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from streammuse.cli.main import app as cli_app
from streammuse.experiment.take import Take, rederive_played, write_take
from streammuse.experiment.take_replay import TakeDelays, replay_take
from streammuse.errors import StreamMuseError
from streammuse.metrics.evaluate import evaluate_run, read_performance
from streammuse.serving.app import create_app
from streammuse.experiment.jam_server import JamServer
from streammuse.core.drivers import RealtimeDriver
from streammuse.core.sessions import SessionCore
from streammuse.experiment.jam_server import planner, take_writer


def hand_take(**changes) -> Take:
    """120 BPM (tau = 125 ms), I = 2, GL = 3, six ticks.

    r0 (s=0) answers at -80 ms: ok, ticks 0-2. r1 (s=2) answers at 300 ms, after tick 2's
    onset (250): late, so tick 2 plays r0's frame 2 (a backup) and ticks 3-4 take r1's.
    r2 (s=4) answers at 480 ms, before tick 4 (500): ok; its frame 1 (tick 5) is silent.
    """
    body = {
        "bpm": 120, "interval": 2, "gen_len": 3, "seed": 7, "model_id": "m", "n_ticks": 6,
        "melody": [[0, 2, 72], [2, 1, 74], [4, 2, 76]],
        "requests": [
            {"request_id": 0, "send_tick": -1, "request_tick": 0, "gen_len": 3, "send_ms": -125.0, "recv_ms": -80.0,
             "status": "ok", "inference_ms": 30.0, "queue_ms": 1.0, "accompaniment": [[[60, 1]], [[62, 1]], [[64, 1]]]},
            {"request_id": 1, "send_tick": 1, "request_tick": 2, "gen_len": 3, "send_ms": 126.0, "recv_ms": 300.0,
             "status": "late", "inference_ms": 150.0, "queue_ms": 4.0, "accompaniment": [[[65, 1]], [[67, 1]], [[69, 1]]]},
            {"request_id": 2, "send_tick": 3, "request_tick": 4, "gen_len": 3, "send_ms": 375.0, "recv_ms": 480.0,
             "status": "ok", "inference_ms": 60.0, "queue_ms": 2.0, "accompaniment": [[[71, 1]], [], [[72, 2]]]},
        ],
        "played": [{"tick": t, "request_id": r, "staleness": s}
                   for t, (r, s) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (2, 0), (2, 1)])],
        "tick_lateness_ms": [0.5, 1.0, 0.7],
    }
    body.update(changes)
    return Take.model_validate(body)


def test_rederive_follows_the_buffer_rules():
    played = rederive_played(hand_take())
    assert [(p.request_id, p.staleness) for p in played] == [(0, 0), (0, 1), (0, 2), (1, 1), (2, 0), (2, 1)]


def test_an_answer_at_exactly_the_onset_is_late():
    take = hand_take()
    take.requests[2].recv_ms = 500.0  # tick 4's onset
    assert [(p.request_id, p.staleness) for p in rederive_played(take)][4:] == [(1, 2), (2, 1)]


def test_take_becomes_a_run_folder_that_evaluate_reads(tmp_path):
    run = write_take(hand_take(), tmp_path)
    assert run.name.endswith("-jam-I2-GL3")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["setting"] == "jam" and manifest["songs"] == ["take"] and manifest["seed"] == 7
    assert manifest["jam"]["page_buffer_mismatches"] == 0
    assert manifest["jam"]["tick_lateness"]["max_ms"] == 1.0
    ticks = pd.read_parquet(run / "ticks.parquet")
    assert ticks["staleness"].tolist() == [0, 1, 2, 1, 0, 1]
    assert ticks["fresh"].tolist() == [True, True, False, True, True, True]  # tick 2: r1 was newer
    requests = pd.read_parquet(run / "requests.parquet")
    assert requests["status"].tolist() == ["ok", "late", "ok"]
    assert requests["rtt_ms"].tolist() == [45.0, 174.0, 105.0]
    perf = read_performance(run / "songs" / "take.mid")
    assert perf.accompaniment.tolist() == [[0, 1, 60], [1, 1, 62], [2, 1, 64], [3, 1, 67], [4, 1, 71]]
    assert perf.melody.tolist() == [[0, 2, 72], [2, 1, 74], [4, 2, 76]]
    summary = evaluate_run(run, with_nll=False, with_fmd=False)
    assert summary["metrics"]["isr"] == 1.0
    assert summary["metrics"]["staleness"] == pytest.approx(5 / 6)
    assert summary["coverage"]["system"] == 1
    assert "a jam take has no ground truth: JSD and FMD left out" in summary["problems"]


def test_a_page_that_broke_the_rules_is_counted(tmp_path):
    played = [{"tick": t, "request_id": r, "staleness": s}
              for t, (r, s) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)])]  # tick 2 from the late r1
    run = write_take(hand_take(played=played), tmp_path)
    assert json.loads((run / "manifest.json").read_text())["jam"]["page_buffer_mismatches"] == 1


def test_a_tick_playing_a_frame_its_request_lacks_is_refused(tmp_path):
    played = [{"tick": t, "request_id": 0, "staleness": t} for t in range(6)]
    with pytest.raises(StreamMuseError, match="tick 3 plays frame 3 of request 0"):
        write_take(hand_take(played=played), tmp_path)


def test_take_delays_give_each_request_what_the_page_measured():
    draws = TakeDelays(hand_take()).draws
    # r1: RTT 174 = 150 server + 4 queue + 20 network; sent 1 ms after its onset; of the
    # queue, the batch window (3 ms) is the server's own, the rest the sim re-creates
    assert (draws[1].request_ms, draws[1].server_jitter_ms, draws[1].response_ms) == (11.0, 153.0, 10.0)
    assert draws[0].server_jitter_ms == 31.0  # 30 + its whole 1 ms queue
    assert draws[0].network_ms == 45.0 - 31.0


def test_replay_take_runs_the_python_client_with_those_delays(tmp_path):
    from streammuse.model.engine import StreamingEngine

    take = hand_take(seed=0)
    run = replay_take(take, StreamingEngine.random("tiny", seed=0), tmp_path)
    ticks = pd.read_parquet(run / "ticks.parquet")
    # same delays, same rules: r1 late for tick 2 again
    assert ticks["staleness"].tolist() == [0, 1, 2, 1, 0, 1]
    assert json.loads((run / "manifest.json").read_text())["setting"] == "jam-replay"


def _app(tmp_path=None, token=None):
    app = create_app(RealtimeDriver(SessionCore(engine=None)), token=token)
    app.state.jam_take_writer = take_writer(tmp_path) if tmp_path is not None else None
    return TestClient(app)


def test_the_page_is_served_by_the_api_app():
    client = _app()
    first = client.get("/jam", follow_redirects=False)
    assert first.status_code == 307 and first.headers["location"] == "jam/"
    page = client.get("/jam/")
    assert page.status_code == 200 and 'src="static/jam.js"' in page.text
    for name, kind in (("jam.js", "javascript"), ("client.js", "javascript"), ("style.css", "css")):
        asset = client.get(f"/jam/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
    config = client.get("/jam/config.json").json()
    assert config["takes"] is False and config["planner"] is False and config["default_pair"] == [2, 5]
    assert config["voice"]["partials"][0] == 1.0
    assert "/jam/takes" not in client.get("/openapi.json").json()["paths"]


def test_takes_are_written_only_where_the_server_keeps_them(tmp_path):
    body = hand_take().model_dump()
    refused = _app().post("/jam/takes", json=body)
    assert refused.status_code == 404 and refused.json()["code"] == "takes_disabled"
    saved = _app(tmp_path).post("/jam/takes", json=body).json()
    assert saved["isr"] == 1.0 and saved["staleness"] == pytest.approx(5 / 6) and saved["page_buffer_mismatches"] == 0
    assert (tmp_path / saved["name"] / "done" / "take").is_file()
    bad = _app(tmp_path).post("/jam/takes", json={**body, "n_ticks": 5})
    assert bad.status_code == 422 and bad.json()["code"] == "bad_take"


def test_the_page_needs_no_token_but_takes_and_plans_do(tmp_path):
    client = _app(tmp_path, token="s3cret")
    assert client.get("/jam/").status_code == 200 and client.get("/jam/config.json").status_code == 200
    assert client.post("/jam/takes", json=hand_take().model_dump()).status_code == 401
    assert client.get("/jam/plan?bpm=120").status_code == 401
    ok = client.post("/jam/takes", json=hand_take().model_dump(), headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_plan_uses_the_servers_profile():
    from streammuse.planner.profile_fit import load_profile_dict
    from streammuse.planner.recommend import recommend

    client = _app()
    assert client.get("/jam/plan?bpm=120").json()["code"] == "no_profile"
    client.app.state.jam_planner = planner(load_profile_dict("local"))
    answer = client.get("/jam/plan?bpm=120").json()
    assert (answer["interval"], answer["gen_len"]) == recommend(load_profile_dict("local"), 120)
    assert client.get("/jam/config.json").json()["planner"] is True


def test_embedded_server_serves_page_and_api_over_http(tmp_path):
    from streammuse.model.engine import StreamingEngine

    import os

    import torch

    threads = torch.get_num_threads()
    with JamServer(StreamingEngine.random("tiny", seed=0), tmp_path) as server:
        assert server.port > 0
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 2) - 1)  # a core for the browser
        assert httpx.get(f"{server.url}/jam/").status_code == 200
        sid = httpx.post(f"{server.url}/v1/sessions", json={"bpm": 120, "seed": 0}).json()["session_id"]
        answer = httpx.post(f"{server.url}/v1/sessions/{sid}/infer", headers={"x-session-id": sid},
                            json={"request_tick": 0, "gen_len": 2, "melody": []}).json()
        assert answer["status"] == "ok" and len(answer["accompaniment"]) == 2
        saved = httpx.post(f"{server.url}/jam/takes", json=hand_take().model_dump()).json()
        assert saved["run"].startswith(str(tmp_path))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/healthz", timeout=1.0)
    assert torch.get_num_threads() == threads


def test_jam_import_writes_a_downloaded_take(tmp_path):
    take_file = tmp_path / "take.json"
    take_file.write_text(hand_take().model_dump_json())
    result = CliRunner().invoke(cli_app, ["jam", "--import", str(take_file), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "runs").glob("*-jam-I2-GL3/done/take"))) == 1
    take_file.write_text('{"bpm": 120}')
    bad = CliRunner().invoke(cli_app, ["jam", "--import", str(take_file)])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "not a take" in bad.output


def test_jam_refuses_an_unreachable_server():
    result = CliRunner().invoke(cli_app, ["jam", "--server", "http://127.0.0.1:9", "--no-browser"])
    assert result.exit_code == 2 and "server unreachable" in result.output


def test_take_fields_are_checked():
    with pytest.raises(ValueError, match="less than or equal to 108"):
        hand_take(melody=[[0, 1, 200]])  # off the piano
    with pytest.raises(ValueError, match="name"):
        hand_take(name="../../etc")  # the name becomes a file name in the run folder
