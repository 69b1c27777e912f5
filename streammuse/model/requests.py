"""The typed seam between the host side and an engine: one request, and one request
running inside the engine (docs/design.md, "Bring your own engine"). Plain data, no
torch: the session core builds these without importing the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EngineRequest:
    """One session's request to the engine: generate A[s .. s+GL-1] after feeding the true
    melody ``melody_frames`` for ticks [melody_start, s) (default: ending just before s)."""

    state: Any  # the engine's session object (new_session)
    request_tick: int
    melody_frames: np.ndarray
    gen_len: int
    melody_start: int | None = None


@dataclass(eq=False)
class GenJob:
    """One request inside the engine (``StreamingEngine.begin`` / ``step``): the session,
    s (its first tick), GL, and the accompaniment frames generated so far."""

    state: Any
    tick: int
    gen_len: int
    frames: list = field(default_factory=list)

    @property
    def done(self) -> bool:
        """True once all GL frames are generated."""
        return len(self.frames) >= self.gen_len

    def result(self) -> np.ndarray:
        """The ``(GL, FRAME_LEN)`` accompaniment frames A[s .. s+GL-1]."""
        return np.stack(self.frames)
