"""`streammuse plan` end to end: a fixed profile gives a fixed plan; bad input gives one line."""

import json

import pytest
from typer.testing import CliRunner

from streammuse.cli.main import app
from streammuse.planner import recommend
from streammuse.planner.profile_fit import f95_from_profile

# Shipped-style profile (no rtt_fit). By hand:
# Q95(NL) = 100 + 10 (0.05^(-1/2) - 1) = 134.721; 1.645 sigma = 3.290; jitter 0
# f95(GL) = 0.5 GL^2 + 5 GL + 148.011 -> at 120 BPM (tau 125) RT95 = 1.23 .. 1.57 for GL 1..6:
# ceil 2 everywhere, so valid iff 2 <= I <= GL - 2.
FIXED = {
    "name": "fixed",
    "description": "test fixture",
    "network": {"nu_ms": 100.0, "x_min_ms": 10.0, "alpha": 2.0},
    "server_jitter_ms": 0.0,
    "server_model": {"a": 0.5, "b": 5.0, "c": 10.0, "sigma_ms": 2.0},
    "rtt_fit": None,
}
V, C1, C2, XX = "valid", "C1", "C2", "C1+C2"


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps(FIXED))
    return path


def test_f95_from_shipped_profile_by_hand():
    f95 = f95_from_profile(FIXED)
    assert (f95.a, f95.b) == (0.5, 5.0)
    assert f95.c == pytest.approx(10.0 + 10.0 * (20**0.5 - 1) + 100.0 + 1.6448536 * 2.0)
    jittery = f95_from_profile(dict(FIXED, server_jitter_ms=1.0))
    assert jittery.c - f95.c == pytest.approx(1.6448536)  # 95th pct of the N(0, 1) jitter


def test_measured_fit_wins_over_models():
    measured = dict(FIXED, rtt_fit={"mean": {"a": 0, "b": 1, "c": 2}, "p95": {"a": 0, "b": 2, "c": 3}})
    f95 = f95_from_profile(measured)
    assert (f95.a, f95.b, f95.c) == (0.0, 2.0, 3.0)


def test_plan_json_is_stable(profile, tmp_path):
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(
        app, ["plan", "--profile", str(profile), "--bpm", "120", "--max-gl", "6", "--max-i", "4", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["profile"] == "fixed"
    assert report["f95_source"] == "server_model+network"
    (plan,) = report["plans"]
    assert plan["bpm"] == 120.0
    assert plan["tick_ms"] == 125.0
    assert plan["grid"] == [
        [XX, XX, C1, C1, C1, C1],  # I = 1 < 2
        [C2, C2, C2, V, V, V],  # I = 2: GL >= 4
        [C2, C2, C2, C2, V, V],  # I = 3: GL >= 5
        [C2, C2, C2, C2, C2, V],  # I = 4: GL >= 6
    ]
    assert plan["recommended"] == [2, 4]
    assert plan["feasible_share"] == pytest.approx(6 / 24)
    assert plan["counts"] == {V: 6, C1: 4, C2: 12, XX: 2}
    assert "feasible: 6/24 pairs (25.0%)" in result.output
    assert "recommended (I, GL) = (2, 4)" in result.output
    assert recommend(profile, 120, max_i=4, max_gl=6) == (2, 4)


def test_plan_writes_heatmap(profile, tmp_path):
    png = tmp_path / "fig4.png"
    result = CliRunner().invoke(app, ["plan", "--profile", str(profile), "--bpm", "60,150", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_says_what_would_make_it_feasible(tmp_path):
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"name": "slow", "network": None, "server_model": {"a": 0, "b": 0, "c": 500, "sigma_ms": 0}}))
    result = CliRunner().invoke(app, ["plan", "--profile", str(slow), "--bpm", "120", "--max-gl", "4"])
    assert result.exit_code == 0
    assert "feasible: 0/64 pairs (0.0%)" in result.output
    assert "largest BPM that works is 60 (at GL=4)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bpm", "0"], "error: --bpm: BPM must be > 0, got 0"),
        (["--bpm", "-60"], "error: --bpm: BPM must be > 0, got -60"),
        (["--bpm", "fast"], "error: --bpm: 'fast' is not a number"),
        (["--max-gl", "0"], "error: max GL must be >= 1 (the search range is empty), got 0"),
    ],
)
def test_plan_bad_flags(profile, args, message):
    result = CliRunner().invoke(app, ["plan", "--profile", str(profile), *args])
    assert result.exit_code == 2
    assert result.stderr.strip() == message


def test_plan_bad_profiles(tmp_path):
    missing = CliRunner().invoke(app, ["plan", "--profile", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "cannot read profile" in missing.stderr
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"name": "empty", "network": None}))
    result = CliRunner().invoke(app, ["plan", "--profile", str(empty)])
    assert result.exit_code == 2
    assert "neither rtt_fit.p95 nor server_model" in result.stderr


def test_plan_warns_when_the_fit_goes_negative(tmp_path):
    concave = tmp_path / "concave.json"
    fit = {"a": -10.0, "b": 20.0, "c": 5.0}  # f95(3) = -25 ms: extrapolated nonsense
    concave.write_text(json.dumps({"name": "concave", "network": None, "rtt_fit": {"mean": fit, "p95": fit}}))
    result = CliRunner().invoke(app, ["plan", "--profile", str(concave), "--bpm", "120", "--max-gl", "4"])
    assert result.exit_code == 0
    assert "warning: f95(GL) <= 0 ms at GL = 3, 4" in result.output
