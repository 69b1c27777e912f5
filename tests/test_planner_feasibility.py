"""Equation 3 and its corollary, on cases worked by hand (paper IV-D)."""

import itertools
import math

import pytest

from streammuse.errors import StreamMuseError
from streammuse.feasibility import (
    Verdict,
    classify,
    infeasible_advice,
    max_feasible_bpm,
    passes_corollary,
    plan_bpm,
    recommend_pair,
    rt95_ticks,
    tick_ms,
)
from streammuse.rtt import QuadraticFit

# f95(GL) = 10 GL + 100 ms. At 120 BPM tau = 125 ms, so RT95(GL) = (10 GL + 100) / 125.
LINE = QuadraticFit(0.0, 10.0, 100.0)


def test_tick_ms():
    assert tick_ms(120) == 125.0
    assert tick_ms(60) == 250.0
    for bad in (0, -10, float("nan")):
        with pytest.raises(StreamMuseError, match="BPM"):
            tick_ms(bad)


@pytest.mark.parametrize(
    ("interval", "gen_len", "verdict"),
    [
        # GL=4: RT95 = 140/125 = 1.12, ceil 2 -> only I = 2 fits 2 <= I <= 4 - 2.
        (1, 4, Verdict.C1),
        (2, 4, Verdict.VALID),
        (3, 4, Verdict.C2),
        # GL=3: RT95 = 1.04, ceil 2 -> 2 <= I <= 1 is empty.
        (1, 3, Verdict.C1),
        (2, 3, Verdict.C2),
        # GL=1: RT95 = 0.88, ceil 1 -> I = 1 needs GL >= 2.
        (1, 1, Verdict.C2),
        # GL=2, RT95 = 0.96, ceil 1: I = 1 valid.
        (1, 2, Verdict.VALID),
    ],
)
def test_classify_by_hand(interval, gen_len, verdict):
    assert classify(interval, gen_len, rt95_ticks(LINE, gen_len, 120)) is verdict


def test_both_violations():
    # RT95 = 2.5 -> ceil 3: I = 2 < 3 (C1) and GL = 4 < 2 + 3 (C2).
    assert classify(2, 4, 2.5) is Verdict.BOTH


def test_corollary_by_hand():
    assert not passes_corollary(3, rt95_ticks(LINE, 3, 120))  # 3 < 2 * 2
    assert passes_corollary(4, rt95_ticks(LINE, 4, 120))


@pytest.mark.parametrize("bpm", [60, 90, 120, 150, 200])
@pytest.mark.parametrize("curve", [LINE, QuadraticFit(0.5, 5.0, 150.0), QuadraticFit(0.05, 3.0, 2.0)])
def test_corollary_is_necessary(curve, bpm):
    plan = plan_bpm(curve, bpm, max_i=16, max_gl=16)
    for i, gl in itertools.product(range(1, 17), range(1, 17)):
        if plan.verdicts[i - 1][gl - 1] is Verdict.VALID:
            assert passes_corollary(gl, plan.rt95[gl - 1])
    # ... and at a GL that passes it, I = ceil(RT95) is valid.
    for gl in range(1, 17):
        k = math.ceil(plan.rt95[gl - 1])
        if passes_corollary(gl, plan.rt95[gl - 1]) and 1 <= k <= 16:
            assert plan.verdicts[k - 1][gl - 1] is Verdict.VALID


def test_plan_share_and_recommendation():
    plan = plan_bpm(LINE, 120, max_i=4, max_gl=6)
    # RT95 ceil per GL 1..6 = 1, 1, 2, 2, 2, 2 (110, 120, 130, ..., 160 ms over 125).
    assert [math.ceil(r) for r in plan.rt95] == [1, 1, 2, 2, 2, 2]
    assert plan.feasible_pairs == [(1, 2), (2, 4), (2, 5), (2, 6), (3, 5), (3, 6), (4, 6)]
    assert plan.feasible_share == pytest.approx(7 / 24)
    assert plan.recommended == (1, 2)


def test_max_bpm_and_advice_for_a_slow_deployment():
    slow = QuadraticFit(0.0, 0.0, 500.0)
    # k = min(max_i, floor(GL/2)) = 2 at GL = 4: BPM <= 15000 * 2 / 500 = 60.
    assert max_feasible_bpm(slow, max_i=16, max_gl=4) == (60.0, 4)
    assert recommend_pair(slow, 60, max_i=16, max_gl=4) == (2, 4)
    advice = infeasible_advice(slow, 120, max_i=16, max_gl=4)
    assert "largest BPM that works is 60 (at GL=4)" in advice
    assert "from 500.0 ms to <= 250.0 ms" in advice
    with pytest.raises(StreamMuseError, match="largest BPM that works is 60"):
        recommend_pair(slow, 60.5, max_i=16, max_gl=4)


def test_empty_search_range():
    with pytest.raises(StreamMuseError, match="search range is empty"):
        plan_bpm(LINE, 120, max_i=0)
    with pytest.raises(StreamMuseError, match="search range is empty"):
        plan_bpm(LINE, 120, max_gl=0)
