"""Autoscaling on sessions: as many replicas as the sessions that want one need.

Ray Serve's default policy scales on ongoing requests per replica. A streaming session
is not a request: it holds a replica's engine state for a whole song, and a replica
that is full refuses new sessions (503 ``overloaded``, core/admission.py) quickly, so
the refused sessions never show up as ongoing requests and the default policy does not
see the load that matters. Each replica reports instead (``record_autoscaling_stats``)
its *demand*, the live sessions plus those refused for room that still ask, and its
capacity N (``max_sessions``, measured or set); this policy asks for

    replicas = ceil(sum of demand / N)

within ``min_replicas .. max_replicas``, after ``upscale_delay_s`` (2 s: a refused
musician is waiting) when more, after ``downscale_delay_s`` (120 s) when fewer.
"""

from __future__ import annotations

import math
from typing import Any

DEMAND_METRIC = "session_demand"
CAPACITY_METRIC = "max_sessions"
POLICY_PATH = "streammuse.serving.autoscaling:session_policy"
# Not autoscaling's, but reported beside it: the sessions a replica would still admit, in
# its routing stats, by which the router places creates (serving/router.py).
ROOM_STAT = "room"


def replicas_for(demand: float, capacity: float) -> int:
    """ceil(demand / capacity) replicas (at least one)."""
    return max(1, math.ceil(demand / capacity - 1e-9)) if capacity > 0 else 1


def session_policy(ctx) -> tuple[int, dict[str, Any]]:
    """Ray Serve custom autoscaling policy (``AutoscalingConfig.policy``): the replicas the
    reported session demand needs; ``ctx`` is a ``ray.serve.config.AutoscalingContext``.
    Ray applies ``min_replicas`` / ``max_replicas`` and the up- and downscale delays
    around it. Before any replica has reported, the current target stands."""
    metrics = ctx.aggregated_metrics or {}
    demand, capacity = metrics.get(DEMAND_METRIC, {}), metrics.get(CAPACITY_METRIC, {})
    if not demand or not capacity:
        return ctx.target_num_replicas, {}
    return replicas_for(sum(demand.values()), sum(capacity.values()) / len(capacity)), {}
