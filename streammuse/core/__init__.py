"""The session core: the rules that decide what a session plays, written once.

``SessionCore`` (``sessions.py``) holds a replica's sessions and pending requests and
applies the rules: a newer request of a session supersedes an older one still waiting,
a request that needs history the replica lacks is answered ``unknown_session``, a
re-sent context rebuilds the session, and the requests of many sessions run in one
batched engine call. It is clock-agnostic: every method takes the time it runs at.

The drivers (``drivers.py``) decide only where time comes from: ``RealtimeDriver``
(asyncio + a worker thread: ``serve``, ``deploy``, the Local socket server; it batches
continuously, requests joining between frame steps, ``stepping.py``),
``VirtualDriver`` (the sim clock: time advanced by the simulation, a batch lasting its
measured compute time or a profile's measured server model) and ``run_now`` (one
request, at once, in this thread).
"""

from streammuse.core.sessions import Batch, CoreOptions, Job, SessionCore

__all__ = ["Batch", "CoreOptions", "Job", "SessionCore"]
