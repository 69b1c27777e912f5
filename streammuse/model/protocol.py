"""The engine's protocol: what the session core, the server, the sim clock and the replay
ask of an engine, so that any streaming model can stand behind them (docs/design.md,
"Bring your own engine").

:class:`Engine` is the least: sessions and whole requests. :class:`SteppingEngine` adds
``begin`` / ``step``, which the real-time driver uses for continuous batching (requests
join and leave between ticks); an engine without them is run one whole batch at a time.
``StreamingEngine`` (the shipped model) is a ``SteppingEngine``; ``SilentEngine`` (timing
only) an ``Engine``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from streammuse.model.sampling import Sampling
from streammuse.model.requests import EngineRequest, GenJob


@runtime_checkable
class Engine(Protocol):
    """Sessions and requests. A session is the engine's own object (opaque to callers)."""

    model_id: str

    def new_session(self, sampling: Sampling | None = None) -> Any:
        """A fresh session with its sampling settings (seed included)."""

    def release(self, state: Any) -> None:
        """Forget a session (between requests only)."""

    def rebuild(self, state: Any, melody_frames: np.ndarray, accompaniment_frames: np.ndarray) -> None:
        """Replace a session's history with a context a client re-sent (M[:s], A[:s])."""

    def infer_batch(self, requests: list[EngineRequest]) -> list[np.ndarray]:
        """For each request, its ``(GL, FRAME_LEN)`` accompaniment frames A[s .. s+GL-1]."""


@runtime_checkable
class SteppingEngine(Engine, Protocol):
    """An engine that runs requests a tick at a time (continuous batching)."""

    def begin(self, requests: list[EngineRequest]) -> list[GenJob]:
        """Accept requests and feed their melody; no frame is generated yet."""

    def step(self, jobs: list[GenJob]) -> None:
        """One tick for every unfinished job (``job.done``, ``job.result()`` tell the rest)."""
