"""`streammuse replay` through the CLI: bad inputs (one line, exit 2) and a short wall-clock
replay end to end against the embedded server."""

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from streammuse.cli.main import app

TESTSET = Path(__file__).resolve().parents[1] / "testset"
runner = CliRunner()


def _fails(args, message):
    result = runner.invoke(app, ["replay", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], result.output
    assert "Traceback" not in result.output


def test_missing_and_empty_testset(tmp_path):
    _fails([str(tmp_path / "nope")], "no such folder")
    _fails([str(tmp_path)], "no MIDI files")


def test_unreadable_profile(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{oops")
    _fails([str(TESTSET), "--profile", str(bad), "--out", str(tmp_path)], "not valid JSON")
    _fails([str(TESTSET), "--profile", str(tmp_path / "none.json"), "--out", str(tmp_path)], "cannot read profile")


def test_bad_flags(tmp_path):
    _fails([str(TESTSET), "--setting", "moon", "--out", str(tmp_path)], "--setting must be one of")
    _fails([str(TESTSET), "--sweep", "1-3", "--out", str(tmp_path)], "is not a pair")
    _fails([str(TESTSET), "--gen-len", "99", "--out", str(tmp_path)], "--gen-len")
    _fails([str(TESTSET), "--clock", "moon", "--out", str(tmp_path)], "--clock must be")


def test_unreachable_server(tmp_path):
    _fails([str(TESTSET), "--server", "http://127.0.0.1:9", "--songs", "1", "--max-bars", "1",
            "--out", str(tmp_path)], "unreachable")


def test_wall_clock_replay_end_to_end(tmp_path):
    # One song, one bar (16 ticks, 2 s at 120 BPM) against the embedded IPC server.
    result = runner.invoke(app, ["replay", str(TESTSET), "--setting", "local", "--interval", "1", "--gen-len", "3",
                                 "--songs", "1", "--max-bars", "1", "--random-weights", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [run] = tmp_path.iterdir()
    assert run.name.endswith("-local-I1-GL3")
    ticks = pd.read_parquet(run / "ticks.parquet")
    reqs = pd.read_parquet(run / "requests.parquet")
    assert len(ticks) == 16 and len(reqs) == 16  # I = 1: one request per tick, the first at tick -1
    assert list(reqs.send_tick) == list(range(-1, 15)) and list(reqs.request_tick) == list(range(16))
    assert set(reqs.status) <= {"ok", "late", "superseded"}
    assert ticks.available.sum() > 0 and (ticks.staleness[ticks.available == 1] <= 2).all()
    assert len(list((run / "songs").glob("*.mid"))) == 1 and len(list((run / "done").iterdir())) == 1
    assert "ISR" in result.output


def test_auto_takes_the_planners_pair(tmp_path):
    # Shipped remote profile at 120 BPM: f95 spans two ticks, so eq. 3 gives I=2, GL=4
    # (the same pair `streammuse plan --profile remote --bpm 120` recommends).
    result = runner.invoke(app, ["replay", str(TESTSET), "--setting", "remote", "--auto", "--clock", "sim",
                                 "--random-weights", "--songs", "1", "--max-bars", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "recommends I=2, GL=4" in result.output
    (run,) = tmp_path.iterdir()
    assert run.name.endswith("-remote-I2-GL4")
    _fails([str(TESTSET), "--auto", "--sweep", "1,3", "--out", str(tmp_path)], "cannot be combined with --sweep")
    _fails([str(TESTSET), "--auto", "--setting", "offline", "--out", str(tmp_path)], "offline baseline has none")
    _fails([str(TESTSET), "--auto", "--bpm", "1000", "--setting", "remote", "--out", str(tmp_path)], "is feasible at 1000 BPM")
