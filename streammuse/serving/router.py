"""The replicas' request router: Ray Serve's consistent-hash affinity, minus the wait
for a dead replica (issue 13, fail-over within a bar).

Ray's ``ConsistentHashRouter`` maps a session id (``x-session-id``) to one replica on a
hash ring rebuilt only when the controller broadcasts a new replica set, seconds after a
replica dies. Meanwhile the router already knows (``on_replica_actor_died``: a call or a
queue-length probe met ``ActorDiedError``) but the ring still names the dead replica,
so with no fallbacks every request for its sessions waits in the proxy, fills
``max_queued_requests`` and turns everyone else's requests into 503s. This router drops
the dead replica from the ring at once: its sessions' requests go to the next replica
on the ring, which answers 404 ``unknown_session`` and the client re-sends the context.
"""

from __future__ import annotations

from ray.serve.experimental.consistent_hash_router import ConsistentHashRouter


class FailoverHashRouter(ConsistentHashRouter):
    """ConsistentHashRouter whose ring forgets a replica as soon as the router sees it died."""

    def on_replica_actor_died(self, replica_id) -> None:
        """Drop the replica from the replica set and the ring."""
        super().on_replica_actor_died(replica_id)
        self._rebuild_ring(frozenset(self._replica_id_set))
