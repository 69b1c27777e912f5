"""The gate's per-metric verdicts, worked by hand."""

import math

import pytest

from streammuse.gate.compare import Verdict, compare, failed, judge


@pytest.mark.parametrize(
    ("metric", "baseline", "now", "verdict"),
    [
        ("remote-I2-GL4/isr_w", 0.95, 0.94, Verdict.PASS),  # 0.01 worse, tolerance 0.02
        ("remote-I2-GL4/isr_w", 0.95, 0.92, Verdict.REGRESSED),  # 0.03 worse
        ("remote-I2-GL4/isr_w", 0.90, 0.95, Verdict.IMPROVED),
        ("offline/ur", 0.10, 0.12, Verdict.PASS),  # lower is better, tolerance 0.03
        ("offline/ur", 0.10, 0.14, Verdict.REGRESSED),
        ("offline/nll_wavg", 2.00, 2.03, Verdict.PASS),  # 1.5% worse, tolerance 2%
        ("offline/nll_wavg", 2.00, 2.05, Verdict.REGRESSED),  # 2.5% worse
        ("local-I1-GL2/staleness", 1.0, 0.5, Verdict.IMPROVED),
        ("local-I1-GL2/staleness", math.nan, math.nan, Verdict.PASS),
        ("local-I1-GL2/isr", 0.99, math.nan, Verdict.REGRESSED),
    ],
)
def test_judge(metric, baseline, now, verdict):
    assert judge(metric, baseline, now) is verdict


def test_compare_missing_and_new():
    rows = compare({"offline/cr": 0.8, "offline/ur": 0.1}, {"offline/cr": 0.81, "offline/isr": 1.0})
    assert [(r.metric, r.verdict) for r in rows] == [
        ("offline/cr", Verdict.PASS),
        ("offline/ur", Verdict.MISSING),
        ("offline/isr", Verdict.NEW),
    ]
    assert failed(rows)
    assert not failed(compare({"offline/cr": 0.8}, {"offline/cr": 0.8, "offline/isr": 1.0}))
    assert rows[0].delta == pytest.approx(0.01)


def test_unknown_metric_is_a_bug():
    with pytest.raises(KeyError, match="no gate rule"):
        judge("offline/loudness", 1.0, 2.0)


def test_baseline_round_trip_keeps_nan(tmp_path):
    from streammuse.gate.baseline import read_baseline, write_baseline

    path = tmp_path / "gate" / "baseline.json"
    write_baseline(path, {"songs": 2}, {"offline/cr": 0.8, "local-I1-GL2/staleness": math.nan}, git_rev="abc")
    data = read_baseline(path)
    assert data["config"] == {"songs": 2}
    assert data["metrics"]["offline/cr"] == 0.8
    assert math.isnan(data["metrics"]["local-I1-GL2/staleness"])
    assert "NaN" not in path.read_text()  # strict JSON for other tools


def test_baseline_errors(tmp_path):
    from streammuse.errors import StreamMuseError
    from streammuse.gate.baseline import check_same_config, read_baseline

    with pytest.raises(StreamMuseError, match="--update-baseline"):
        read_baseline(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"config\": {}}")
    with pytest.raises(StreamMuseError, match="'metrics' object"):
        read_baseline(bad)
    with pytest.raises(StreamMuseError, match="different gate configuration"):
        check_same_config({"config": {"songs": 2}}, {"songs": 3}, bad)
