"""Autoscaling on sessions: refused sessions count as demand, and the policy asks for
ceil(demand / N) replicas, up at once, down after the delay."""

from __future__ import annotations

import pytest
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from streammuse.contract import ApiError, CreateSessionRequest, InferRequest
from streammuse.core.sessions import CoreOptions, SessionCore
from streammuse.model.engine import StreamingEngine
from streammuse.serving.app import DeployOptions
from streammuse.serving.autoscaling import CAPACITY_METRIC, DEMAND_METRIC, POLICY_PATH, replicas_for, session_policy


def test_a_refused_session_counts_as_demand_while_it_asks():
    core = SessionCore(StreamingEngine.random("tiny", seed=0), CoreOptions(max_sessions=1))
    first, second = (core.create(CreateSessionRequest(seed=s)).session_id for s in (1, 2))
    start = InferRequest(request_tick=0, gen_len=1)
    core._session_for(first, start, now_s=100.0)
    assert core.demand(100.0) == 1
    for t in (101.0, 103.0):  # refused, and asking again after Retry-After: one session of demand
        with pytest.raises(ApiError) as err:
            core._session_for(second, start, now_s=t)
        assert err.value.code == "overloaded"
    assert core.demand(104.0) == 2
    assert core.demand(113.5) == 1  # it stopped asking 10 s ago
    core.close(first)
    core._session_for(second, start, now_s=114.0)  # admitted now: counted once, as live
    assert core.demand(114.0) == 1


def test_a_session_that_stopped_asking_gives_its_room_to_a_new_one():
    # After a scale-out the hash ring moves some sessions to the new replica; their state on
    # the old one never hears from them again and must not keep it full (bench/autoscale.py
    # found a session refused for 40 s by two such ghosts).
    core = SessionCore(StreamingEngine.random("tiny", seed=0), CoreOptions(max_sessions=1, session_idle_s=30.0))
    moved, new = (core.create(CreateSessionRequest(seed=s)).session_id for s in (1, 2))
    start = InferRequest(request_tick=0, gen_len=1)
    core._session_for(moved, start, now_s=100.0)
    with pytest.raises(ApiError):
        core._session_for(new, start, now_s=129.0)  # still live: never evicted
    assert core.demand(129.0) == 2
    core._session_for(new, start, now_s=131.0)  # 31 s without a request: it makes room
    assert list(core.sessions) == [new] and core.demand(131.0) == 1


def _ctx(demand: dict, capacity: dict, target: int, now: float, state: dict | None = None) -> AutoscalingContext:
    dep = DeploymentID(name="StreamMuseServer", app_name="streammuse")
    replicas = [ReplicaID(unique_id=u, deployment_id=dep) for u in demand]
    by_id = {r.unique_id: r for r in replicas}
    metrics = {DEMAND_METRIC: {by_id[u]: v for u, v in demand.items()},
               CAPACITY_METRIC: {by_id[u]: v for u, v in capacity.items()}}
    return AutoscalingContext(
        deployment_id=dep, deployment_name=dep.name, app_name=dep.app_name, current_num_replicas=len(replicas),
        target_num_replicas=target, running_replicas=replicas, total_num_requests=0.0, total_queued_requests=0.0,
        aggregated_metrics=metrics, raw_metrics={}, capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=3,
        policy_state=state or {}, last_scale_up_time=None, last_scale_down_time=None, current_time=now,
        config=AutoscalingConfig(min_replicas=1, max_replicas=3, upscale_delay_s=2.0, downscale_delay_s=120.0))


def test_policy_asks_for_the_replicas_the_sessions_need():
    assert [replicas_for(d, 3) for d in (0, 1, 3, 4, 6, 7, 40)] == [1, 1, 1, 2, 2, 3, 14]
    # One full replica (3 of 3) and two sessions refused: two replicas.
    assert session_policy(_ctx({"a": 5.0}, {"a": 3.0}, target=1, now=10.0))[0] == 2
    # Demand that one replica holds: one (Ray's wrapper delays the downscale).
    assert session_policy(_ctx({"a": 2.0, "b": 1.0}, {"a": 3.0, "b": 3.0}, target=2, now=20.0))[0] == 1
    # Nothing reported yet: the target stands.
    assert session_policy(_ctx({}, {}, target=2, now=1.0))[0] == 2


def test_the_deployment_uses_the_session_policy():
    config = AutoscalingConfig(**DeployOptions(max_sessions=4).deployment_options()["autoscaling_config"])
    assert config.policy.policy_function == POLICY_PATH
    assert config.metrics_interval_s == 1.0 and config.look_back_period_s == 5.0


def test_deploy_options_reach_the_core_by_name():
    # A field added to CoreOptions once shifted the positional call: max_batch_size became 2.0
    # and max_wait_ms None, and the replicas' batcher died on its first window (songs stalled).
    got = DeployOptions(session_ttl_s=90.0, max_sessions=6, max_batch_size=16, max_wait_ms=3.0,
                        max_sessions_per_client=2).core_options()
    assert (got.session_ttl_s, got.max_sessions, got.max_batch_size, got.max_wait_ms, got.max_sessions_per_client,
            got.session_idle_s) == (90.0, 6, 16, 3.0, 2, 30.0)
