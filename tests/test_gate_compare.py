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
        ("offline/nll", 2.00, 2.03, Verdict.PASS),  # 1.5% worse, tolerance 2%
        ("offline/nll", 2.00, 2.05, Verdict.REGRESSED),  # 2.5% worse
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
