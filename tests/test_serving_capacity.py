"""A replica's capacity from its measured batched step time (serving/capacity.py), and
the Ray Serve limits that come out of it."""

from __future__ import annotations

import pytest

from streammuse.model.engine import StreamingEngine
from streammuse.rtt import NetworkModel
from streammuse.serving.app import DeployOptions, build_app, create_app
from streammuse.serving.capacity import Plan, fit_server_model, ladder, ray_limits, sessions_for
from streammuse.serving.capacity_probe import measure_step_ms

# A measured table: T(B) = 32 + 8 B ms.
TABLE = {1: 40.0, 2: 48.0, 4: 64.0, 8: 96.0, 16: 160.0}


def test_the_fit_is_rtt_servermodels_batched_form():
    model = fit_server_model(TABLE, gen_len=3)
    assert model.mean_ms(3, 1) == pytest.approx(40.0) and model.batch_slope == pytest.approx(0.2)
    assert model.mean_ms(3, 6) == pytest.approx(80.0)  # between measured sizes


@pytest.mark.parametrize(("plan", "expected"), [
    (Plan(120, 1, 3), 8),  # throughput: 32 + 8B <= 0.8 * 1 * 125 = 100 ms -> B <= 8.5
    (Plan(120, 2, 3), 19),  # latency: 2 (32 + 8B) <= 3 * 125 = 375 ms -> B <= 19.4
    (Plan(120, 2, 3, network=NetworkModel(20.0, 10.0, 3.0)), 17),  # NL95 = 37.1 ms -> B <= 17.1
    (Plan(240, 1, 3), 2),  # tau = 62.5 ms: 32 + 8B <= 50 -> B <= 2.25
    (Plan(400, 1, 1), 1),  # nothing fits: one session is still admitted
])
def test_sessions_for_a_measured_table(plan, expected):
    assert sessions_for(TABLE, plan, max_batch_size=32) == expected


def test_a_measured_size_that_breaks_the_bound_caps_the_capacity():
    bumpy = {1: 40.0, 2: 120.0, 4: 64.0}  # B = 2 was measured over budget: the fit alone would allow more
    assert sessions_for(bumpy, Plan(120, 1, 3), max_batch_size=32) == 1
    assert sessions_for(TABLE, Plan(120, 4, 32), max_batch_size=16) == 16  # never past max_batch_size


def test_ray_deployment_options_come_from_the_capacity():
    assert ray_limits(8) == (48, 528, 6.0)  # the queue holds a burst of cheap calls (issue 31)
    options = DeployOptions(max_sessions=8, random_weights=True)
    deployment = build_app({"max_sessions": 8, "random_weights": True})._bound_deployment
    assert (deployment.max_ongoing_requests, deployment.max_queued_requests) == (48, 528)
    assert deployment._deployment_config.autoscaling_config.target_ongoing_requests == 6.0
    assert options.deployment_options()["max_queued_requests"] == 528
    assert deployment._deployment_config.backpressure_config.retry_after_s == 2  # past it Ray says when to retry
    # Replicas that measure their own: Ray's limits from their bound, max_batch_size.
    assert DeployOptions(max_sessions=0, max_batch_size=16).ray_limits() == (64, 544, 12.0)
    # A flag given wins.
    assert DeployOptions(max_sessions=8, max_ongoing_requests=40).ray_limits().max_ongoing_requests == 40


def test_measure_step_ms_on_a_real_engine_stops_past_the_budget():
    engine = StreamingEngine.random("tiny", seed=0)
    table = measure_step_ms(engine, Plan(20, 4, 3), [1, 2], create_app, history=8, repeats=2)  # a 2.4 s budget: both fit
    assert list(table) == [1, 2] and all(ms > 0 for ms in table.values())
    tight = measure_step_ms(engine, Plan(120, 1, 3, utilisation=1e-6), [1, 2, 4], create_app, history=8, repeats=1)
    assert list(tight) == [1]  # B = 1 is already over a (near) zero budget: larger ones are not tried
    assert engine.slots is not None and ladder(32) == [1, 2, 4, 8, 16, 32] and ladder(12) == [1, 2, 4, 8, 12]
