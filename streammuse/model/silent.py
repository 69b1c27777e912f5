"""A timing-only stand-in for the engine: every answer is silence, at no compute.

Under ``--server-time modelled`` the sim clock times each batch by the profile's server
model, never by the tokens, and no session rule (superseding, carried context,
rebuilds) reads a token: so which ticks are played and how stale they are (ISR,
Staleness, ISR_w) do not depend on the model. Sweeps over many pairs, profiles and
seeds (``bench/adaptive_drift.py``) use this engine for those columns, and the real
one for the music metrics. ``tests/test_client_adaptive.py`` checks that a run's tick
log is the same with either engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammuse.datasets.frames import empty_frames
from streammuse.model.requests import EngineRequest


@dataclass(eq=False)
class SilentSession:
    """A session of the silent engine: it keeps nothing."""

    released: bool = False


class SilentEngine:
    """An :class:`~streammuse.model.protocol.Engine` (``new_session``, ``release``,
    ``rebuild``, ``infer_batch``) answering every request with GL empty frames."""

    model_id = "silent (timing only)"

    def new_session(self, sampling=None) -> SilentSession:
        """A session (``sampling`` is ignored: nothing is drawn)."""
        return SilentSession()

    def release(self, state: SilentSession) -> None:
        """Forget the session."""
        state.released = True

    def rebuild(self, state: SilentSession, melody_frames, accompaniment_frames) -> None:
        """Nothing to rebuild."""

    def infer_batch(self, requests: list[EngineRequest]) -> list[np.ndarray]:
        """``(GL, FRAME_LEN)`` empty frames for each request."""
        return [empty_frames(int(req.gen_len)) for req in requests]
