"""Compare a gate run's metrics with the committed baseline, metric by metric.

A metric is named ``<configuration>/<metric>`` (``offline/cr``, ``remote-I2-GL4/isr_w``).
Each metric has a direction (higher or lower is better) and a tolerance: a change in the
bad direction larger than the tolerance is a regression; within it, the figure holds.
Tolerances absorb float differences between machines (a sampled token can flip), not
real regressions: the evaluation is seeded and the sim clock is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Direction(str, Enum):
    """Which way is better."""

    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class Rule:
    """How one metric is judged: its direction and an absolute and/or relative tolerance
    (the larger of the two applies)."""

    direction: Direction
    abs_tol: float = 0.0
    rel_tol: float = 0.0

    def allowed(self, baseline: float) -> float:
        """The largest change in the bad direction that still passes."""
        return max(self.abs_tol, self.rel_tol * abs(baseline))


# Keyed by the metric's name after the configuration prefix.
RULES: dict[str, Rule] = {
    "isr": Rule(Direction.HIGHER, abs_tol=0.02),
    "isr_w": Rule(Direction.HIGHER, abs_tol=0.02),
    "staleness": Rule(Direction.LOWER, abs_tol=0.15),
    "cr": Rule(Direction.HIGHER, abs_tol=0.03),
    "ur": Rule(Direction.LOWER, abs_tol=0.03),
    "dr": Rule(Direction.LOWER, abs_tol=0.03),
    "jsd_pitch": Rule(Direction.LOWER, abs_tol=0.03),
    "jsd_onset": Rule(Direction.LOWER, abs_tol=0.03),
    "nll_wavg": Rule(Direction.LOWER, rel_tol=0.02),
    "fmd": Rule(Direction.LOWER, rel_tol=0.10),
    "notes_per_tick": Rule(Direction.HIGHER, rel_tol=0.25),
    # The engine's efficiency, counted (not timed): aten ops per tick and host reads.
    "ops_per_tick_b1": Rule(Direction.LOWER, rel_tol=0.05),
    "ops_per_tick_b8": Rule(Direction.LOWER, rel_tol=0.05),
    "fixed_host_reads": Rule(Direction.LOWER, abs_tol=0.0),
}


class Verdict(str, Enum):
    """The outcome for one metric."""

    PASS = "pass"
    IMPROVED = "improved"
    REGRESSED = "REGRESSED"
    MISSING = "MISSING"  # in the baseline, not produced now: the gate cannot vouch for it
    NEW = "new"  # produced now, not in the baseline: informative only


@dataclass(frozen=True)
class Row:
    """One line of the gate's table."""

    metric: str
    baseline: float
    now: float
    verdict: Verdict

    @property
    def delta(self) -> float:
        """now - baseline (NaN when either is missing)."""
        return self.now - self.baseline


def rule_for(metric: str) -> Rule:
    """The rule for ``<configuration>/<name>``; an unknown name is our bug, not the user's."""
    name = metric.rsplit("/", 1)[-1]
    if name not in RULES:
        raise KeyError(f"no gate rule for metric {name!r}; add one to streammuse.gate.compare.RULES")
    return RULES[name]


def judge(metric: str, baseline: float, now: float) -> Verdict:
    """Pass, improved or regressed. NaN now where the baseline had a number regresses;
    NaN in both passes (e.g. staleness with no available tick, in both runs)."""
    if math.isnan(baseline) and math.isnan(now):
        return Verdict.PASS
    if math.isnan(now) or math.isnan(baseline):
        return Verdict.REGRESSED
    rule = rule_for(metric)
    worse_by = (baseline - now) if rule.direction is Direction.HIGHER else (now - baseline)
    if worse_by > rule.allowed(baseline):
        return Verdict.REGRESSED
    if -worse_by > rule.allowed(baseline):
        return Verdict.IMPROVED
    return Verdict.PASS


def compare(baseline: dict[str, float], now: dict[str, float]) -> list[Row]:
    """One row per metric in either dict, in the baseline's order, new ones last."""
    rows = []
    for metric, base in baseline.items():
        if metric not in now:
            rows.append(Row(metric, base, math.nan, Verdict.MISSING))
        else:
            rows.append(Row(metric, base, now[metric], judge(metric, base, now[metric])))
    rows += [Row(m, math.nan, v, Verdict.NEW) for m, v in now.items() if m not in baseline]
    return rows


def failed(rows: list[Row]) -> bool:
    """True if any metric regressed or went missing."""
    return any(r.verdict in (Verdict.REGRESSED, Verdict.MISSING) for r in rows)
