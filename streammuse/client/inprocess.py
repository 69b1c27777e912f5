"""InProcessTransport: the engine called directly in this process, no server.

Same Transport protocol as ``streammuse.serving.transport`` (``create_session``,
``infer``, ``close_session``, ``close``), so the client cannot tell the difference. The
sim clock uses it (server time is then modelled or measured around the call), and so do
tests that need no server.

Melody chunks may arrive with gaps closed later or overlapping what was sent before
(a superseded request's chunk is merged into the next one); the session keeps the true
melody by tick and feeds the engine exactly the ticks it has not seen.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from streammuse.client.wire import frames_to_wire, wire_to_frames
from streammuse.serving.protocol import CreateSessionRequest, CreateSessionResponse, InferRequest, InferResponse


@dataclass
class _Session:
    state: object
    fed_until: int = 0  # the engine has seen M[0 .. fed_until)
    melody: dict[int, np.ndarray] = field(default_factory=dict)  # tick -> frame not fed yet


class InProcessTransport:
    """Talks to a :class:`~streammuse.model.engine.StreamingEngine` in this process."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.sessions: dict[str, _Session] = {}

    def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse:
        """Open a session with the request's sampling settings and seed."""
        from streammuse.model.engine import Sampling

        s = request.sampling
        state = self.engine.new_session(Sampling(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=request.seed))
        session_id = secrets.token_hex(16)
        self.sessions[session_id] = _Session(state)
        return CreateSessionResponse(session_id=session_id)

    def infer(self, session_id: str, request: InferRequest) -> InferResponse:
        """Accompaniment for ticks s .. s+GL-1; ``inference_ms`` is the measured engine time.

        Raises:
            UnknownSession: no such session (closed, or never opened here).
        """
        sess = self.sessions.get(session_id)
        if sess is None:
            from streammuse.client.sim import transport_errors

            raise transport_errors()[0](session_id)
        s = request.request_tick
        if s < sess.fed_until and request.context is None:
            # Overtaken by a newer request that already ran: never answer with old news.
            return InferResponse(status="superseded", request_tick=s)
        start_ns = time.perf_counter_ns()
        if request.context is not None:
            m_ctx = wire_to_frames(request.context.melody)
            a_ctx = wire_to_frames(request.context.accompaniment)
            self.engine.rebuild(sess.state, melody_frames=m_ctx, accompaniment_frames=a_ctx)
            sess.fed_until, sess.melody = len(m_ctx), {}
        start = request.melody_start if request.melody_start is not None else s - len(request.melody)
        for i, frame in enumerate(wire_to_frames(request.melody)):
            if start + i >= sess.fed_until:
                sess.melody[start + i] = frame
        new = [sess.melody.pop(t) for t in range(sess.fed_until, s) if t in sess.melody]
        if sess.fed_until + len(new) != s:
            raise ValueError(f"melody for ticks {sess.fed_until}..{s - 1} is incomplete")
        m_new = np.stack(new) if new else np.zeros((0, wire_to_frames([[]]).shape[1]), dtype=np.int16)
        acc = self.engine.infer(sess.state, request_tick=s, melody_frames=m_new, gen_len=request.gen_len)
        sess.fed_until = s
        elapsed_ms = (time.perf_counter_ns() - start_ns) / 1e6
        return InferResponse(status="ok", request_tick=s, accompaniment=frames_to_wire(acc), inference_ms=elapsed_ms)

    def close_session(self, session_id: str) -> None:
        """Forget a session (unknown ids are ignored)."""
        self.sessions.pop(session_id, None)

    def close(self) -> None:
        """Forget all sessions."""
        self.sessions.clear()
