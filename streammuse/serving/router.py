"""The replicas' request router: a session's requests go to the replica that admitted it;
Ray Serve's consistent-hash affinity where that replica is gone, minus the wait for a
dead replica (issue 13, fail-over within a bar).

* A session id names the replica that admitted it at create (``<tag>~<random>``, the
  replica's ``unique_id``, ``core/session_ids.py``; issue 31): while that replica is in
  the replica set, the session's requests go there, so the room it was given at create
  is the room it plays in.
* A create (no ``x-session-id``) goes where there is room: the replicas that reported
  the most (their routing stats, ``ROOM_STAT``, pulled about every second) first, the
  shortest queue among them (Ray probes queue lengths). Where none has room, any replica
  answers 503 ``overloaded`` and counts the refusal as demand for the autoscaler
  (serving/autoscaling.py). A report is up to a second or two old, so two creates in
  one second may meet the same last room: one of them is refused and retries.
* An id whose replica is gone (or an untagged one) is placed on Ray's hash ring
  (``ConsistentHashRouter``), which is rebuilt only when the controller broadcasts a new
  replica set, seconds after a replica dies. Meanwhile the router already knows
  (``on_replica_actor_died``: a call or a queue-length probe met ``ActorDiedError``), so
  this router drops the dead replica from the ring at once: its sessions' requests go to
  the next replica on the ring, which answers 404 ``unknown_session`` and the client
  re-sends the context.
"""

from __future__ import annotations

from ray.serve.experimental.consistent_hash_router import ConsistentHashRouter

from streammuse.core.session_ids import routing_tag
from streammuse.serving.autoscaling import ROOM_STAT


def ranks_for_create(replicas: list) -> list[list]:
    """Replicas for a create, best first: grouped by the room they last reported (most
    first; a replica that has not reported yet counts as having room), each group one
    rank (Ray takes the shortest queue within it)."""
    def room(replica) -> int:
        stats = getattr(replica, "routing_stats", None) or {}
        return int(stats.get(ROOM_STAT, 1))

    by_room: dict[int, list] = {}
    for replica in replicas:
        by_room.setdefault(room(replica), []).append(replica)
    return [by_room[r] for r in sorted(by_room, reverse=True)]


class FailoverHashRouter(ConsistentHashRouter):
    """Tagged ids to their replica, creates to the least busy one, the rest on a ring that
    forgets a replica as soon as the router sees it died."""

    def on_replica_actor_died(self, replica_id) -> None:
        """Drop the replica from the replica set and the ring."""
        super().on_replica_actor_died(replica_id)
        self._rebuild_ring(frozenset(self._replica_id_set))

    async def choose_replicas(self, candidate_replicas, pending_request=None):
        """Ranked candidates (module docstring)."""
        if not candidate_replicas or pending_request is None:
            return await super().choose_replicas(candidate_replicas, pending_request)
        session_id = pending_request.metadata.session_id
        if not session_id:  # a create, a health probe without affinity
            pending_request.routing_context.should_backoff = True
            return ranks_for_create(list(candidate_replicas))
        tag = routing_tag(session_id)
        if tag is not None:
            for replica in candidate_replicas:
                if replica.replica_id.unique_id == tag:
                    pending_request.routing_context.should_backoff = True
                    return [[replica]]
        return await super().choose_replicas(candidate_replicas, pending_request)
