"""ISR, Staleness, ISR_w (section V-D) on a schedule worked out by hand."""

import math

import pandas as pd
import pytest

from streammuse.metrics.realtime import isr, isr_w, staleness

# 8 ticks: two misses (ticks 2 and 4), hits with S(t) = 0, 1, 3, 0, 2, 0.
AVAILABLE = [1, 1, 0, 1, 0, 1, 1, 1]
STALENESS = [0, 1, -1, 3, -1, 0, 2, 0]


def test_isr_counts_hits_over_all_ticks():
    assert isr(AVAILABLE) == pytest.approx(6 / 8)


def test_staleness_averages_over_hits_only():
    # (0 + 1 + 3 + 0 + 2 + 0) / 6; the -1 on misses must not enter
    assert staleness(AVAILABLE, STALENESS) == pytest.approx(1.0)


def test_isr_w_by_hand():
    # (1/8) * sum over hits of (32 - S) / 32 = (1/8) * (6 * 32 - 6) / 32
    assert isr_w(AVAILABLE, STALENESS) == pytest.approx(186 / 256)
    assert isr_w(AVAILABLE, STALENESS, c=4) == pytest.approx((6 * 4 - 6) / 4 / 8)


def test_all_fresh_is_perfect_and_all_missed_is_zero():
    assert isr_w([1] * 5, [0] * 5) == 1.0
    assert isr([0, 0, 0]) == 0.0 and isr_w([0, 0, 0], [-1, -1, -1]) == 0.0


def test_empty_input_is_nan():
    assert math.isnan(isr([])) and math.isnan(isr_w([], []))
    assert math.isnan(staleness([0, 0], [-1, -1]))  # no hit: nothing to average


def test_ticks_table_gives_the_same_values():
    ticks = pd.DataFrame({"song": "a", "tick": range(8), "available": AVAILABLE, "staleness": STALENESS})
    assert (isr(ticks), staleness(ticks), isr_w(ticks)) == pytest.approx((0.75, 1.0, 186 / 256))


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError):
        isr_w([1, 1], [0])
