"""`streammuse evaluate` / `streammuse report` over hand-made run folders."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from metrics_runs import make_run, make_testset
from streammuse.cli.main import app
from streammuse.metrics import report as rp

runner = CliRunner()

# song_a and song_b: all fresh; (4, 9) plays nothing on song_b and misses its 32 ticks
SILENT_B = {"song_b": []}
MISSED_B = {"song_b": [(0, -1, False)] * 32}


@pytest.fixture
def runs(tmp_path):
    testset = make_testset(tmp_path / "testset")
    root = tmp_path / "runs"
    make_run(root, testset, interval=2, gen_len=5)
    make_run(root, testset, interval=4, gen_len=9, played=SILENT_B, ticks=MISSED_B)
    make_run(root, testset, interval=1, gen_len=3, ticks={"song_a": [(1, 1, False)] * 32})
    make_run(root, testset, setting="offline", interval=1, gen_len=1)
    make_run(root, testset, setting="remote", interval=2, gen_len=5, finished=["song_a"])
    return root


def invoke(*args):
    """Exit code and stdout (what a user pipes into a file); on failure, all it printed."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_evaluate_writes_metrics_and_report_prints_the_table(runs):
    code, out = invoke("evaluate", "--no-nll", *map(str, sorted(runs.iterdir())))
    assert code == 0, out
    assert "2/2 songs" in out and "1/2 songs" in out and "song_b" in out  # the partial remote run names it
    assert all((r / "metrics" / "summary.json").is_file() for r in runs.iterdir())
    code, out = invoke("report", "--no-nll", *map(str, sorted(runs.iterdir())))
    assert code == 0, out
    for text in ("local", "remote", "(1, 3)", "(2, 5)", "(4, 9)", "Offline", "ISR_w ↑", "UR ↓",
                 "FMD [streammuse-symbolic-v1]", "covers 1 of 2 songs"):
        assert text in out, text


def test_markdown_bolds_the_two_best_of_three_streaming_rows(runs):
    code, out = invoke("report", "--no-nll", "--format", "markdown", *map(str, sorted(runs.iterdir())))
    assert code == 0, out
    local = out.split("**remote**")[0]
    lines = {line.split(" | ")[0].lstrip("| "): line for line in local.splitlines() if line.startswith("| (")
             or line.startswith("| Offline")}
    # ISR_w: (2,5) 1 and (1,3) (32 * 31/32 + 32) / 64 are the best two; (4,9) 0.5 is not
    assert lines["(2, 5)"].endswith("| **1** | 2026-01-01-local-I2-GL5 |")
    assert lines["(1, 3)"].endswith("| **0.9844** | 2026-01-01-local-I1-GL3 |")
    assert "**" not in lines["Offline"]
    assert lines["(4, 9)"].split(" | ")[1] == "2/2"
    assert lines["(4, 9)"].endswith("| 0.5 | 2026-01-01-local-I4-GL9 |")
    # Staleness: (2, 5) and (4, 9) at 0 are best (lower is better); (1, 3) at 0.5 is not
    assert "| **0.5** |" not in lines["(1, 3)"] and "| 0.5 |" in lines["(1, 3)"]


def test_csv_and_json_formats(runs):
    paths = list(map(str, sorted(runs.iterdir())))
    code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "csv", *paths)
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    local = {(r["interval"], r["gen_len"]): r for r in rows if r["table"] == "local"}
    assert float(local[("4", "9")]["cr"]) == pytest.approx(0.5) and local[("4", "9")]["n_songs"] == "2"
    assert "isr_w" in local[("2", "5")]["best_two"].split()
    code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "json", *paths)
    data = json.loads(out)
    offline = [r for r in data["rows"] if r["setting"] == "offline"]
    assert offline and offline[0]["isr"] is None and offline[0]["cr"] == 1.0


def test_paper_rows_and_plots(runs, tmp_path):
    code, out = invoke("report", "--no-nll", "--no-fmd", "--paper", "--format", "markdown",
                       "--plots", str(tmp_path / "figs"), *map(str, sorted(runs.iterdir())))
    assert code == 0, out
    assert "(1, 3) paper" in out and "0.9951" in out and "Offline paper" in out
    pngs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert "isr_w_cr.png" in pngs and any(p.startswith("pianoroll-") for p in pngs)
    assert all((tmp_path / "figs" / p).stat().st_size > 5000 for p in pngs)


def test_paper_table_has_all_27_rows():
    rows = rp.paper_rows()
    assert len(rows) == 27
    local_13 = next(r for r in rows if r.setting == "local" and (r.interval, r.gen_len) == (1, 3))
    assert local_13.metrics["isr_w"] == 0.9951 and local_13.metrics["fmd"] == 279.2


def test_bad_folders_say_which(tmp_path, runs):
    code, out = invoke("report", str(tmp_path / "nope"))
    assert code == 2 and "no such run folder" in out
    (tmp_path / "empty").mkdir()
    code, out = invoke("report", str(tmp_path / "empty"))
    assert code == 2 and "no manifest.json" in out
    code, out = invoke("report", "--format", "xml", *map(str, runs.iterdir()))
    assert code == 2 and "--format" in out


def test_best_two_keeps_ties():
    rows = [rp.Row("local", i, 5, {"cr": v, "ur": u}) for i, (v, u) in enumerate([(0.9, 0.3), (0.8, 0.1),
                                                                                  (0.9, 0.2), (0.1, 0.2)])]
    rows.append(rp.Row("offline", None, None, {"cr": 0.99, "ur": 0.0}))
    best = rp.best_two(rows)
    assert best["cr"] == {0, 2}  # two rows tie for first; 0.8 is third
    assert best["ur"] == {1, 2, 3}  # 0.1 first, 0.2 second twice; offline never counts


def test_report_finds_nested_runs_and_names_each(tmp_path, monkeypatch):
    """`report runs/*` after `make` (runs/main-*/ holds runs) and bare `report` both find
    every run at any depth; the run column tells the two (2, 5) rows apart."""
    testset = make_testset(tmp_path / "testset")
    for main in ("main-a", "main-b"):
        make_run(tmp_path / "runs" / main, testset, interval=2, gen_len=5)
    make_run(tmp_path / "runs" / "main-a", testset, setting="offline", interval=1, gen_len=1)
    make_run(tmp_path / "runs" / "t3" / "deeper", testset, interval=1, gen_len=3)
    monkeypatch.chdir(tmp_path)
    paths = [str(p.relative_to(tmp_path)) for p in sorted((tmp_path / "runs").iterdir())]
    assert paths == ["runs/main-a", "runs/main-b", "runs/t3"]
    for args in (paths, []):
        code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "csv", *args)
        assert code == 0, out
        rows = list(csv.DictReader(io.StringIO(out)))
        names = {r["run_name"] for r in rows}
        assert names == {"main-a/2026-01-01-local-I2-GL5", "main-b/2026-01-01-local-I2-GL5",
                         "main-a/2026-01-01-offline-I1-GL1", "t3/deeper/2026-01-01-local-I1-GL3"}, names
    code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "markdown", "runs/main-b")
    assert code == 0 and "| 2026-01-01-local-I2-GL5 |" in out, out
    (tmp_path / "runs" / "empty").mkdir()
    code, out = invoke("report", "runs/empty")
    assert code == 2 and "no manifest.json" in out


def test_bold_only_among_comparable_rows(runs):
    # one streaming row (remote) against the Offline row: nothing is bold
    code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "markdown",
                       str(runs / "2026-01-01-remote-I2-GL5"), str(runs / "2026-01-01-offline-I1-GL1"))
    assert code == 0 and "| (2, 5) |" in out and "**" not in out.replace("**remote**", ""), out
    # two streaming rows: only the better one per column is bold, ties with it too
    code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "markdown",
                       str(runs / "2026-01-01-local-I2-GL5"), str(runs / "2026-01-01-local-I4-GL9"),
                       str(runs / "2026-01-01-offline-I1-GL1"))
    lines = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.splitlines()
             if line.startswith("| (") or line.startswith("| Offline")}
    # columns: label, songs, JSD(P), JSD(O), FMD, CR, UR, NLL, ISR, Staleness, ISR_w, run
    assert lines["(2, 5)"][2] == "**0**" and lines["(4, 9)"][2] == "0.2335"  # JSD(P): lower is better
    assert lines["(2, 5)"][5] == "**1**" and lines["(4, 9)"][5] == "0.5"  # CR
    assert lines["(2, 5)"][9] == "0" and lines["(4, 9)"][9] == "0"  # Staleness: tied, so neither
    assert not any("**" in cell for cell in lines["Offline"])


def test_offline_rows_name_their_song_set(tmp_path):
    testset = make_testset(tmp_path / "testset")
    make_run(tmp_path / "a", testset, setting="offline", interval=1, gen_len=1)
    make_run(tmp_path / "b", testset, setting="offline", interval=1, gen_len=1, songs=("song_a",))
    make_run(tmp_path / "b", testset, interval=2, gen_len=5, songs=("song_a",))
    code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "markdown", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 0, out
    assert "| Offline (2 songs, whole) | 2/2 |" in out and "| Offline (1 song, whole) | 1/1 |" in out, out
    code, out = invoke("report", "--no-nll", "--no-fmd", "--format", "markdown", str(tmp_path / "b"))
    assert "| Offline | 1/1 |" in out, out  # one song set: the plain label
