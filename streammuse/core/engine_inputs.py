"""What a batch hands the engine for one session (``SessionCore.take_batch``): the context
to rebuild from, and the melody rows the session has not fed yet."""

from __future__ import annotations

import numpy as np

from streammuse.contract import ApiError, CreateSessionRequest, InferRequest, wire_to_frames
from streammuse.datasets import vocab
from streammuse.model.requests import EngineRequest


def freeze_context(sess, context) -> tuple[np.ndarray, np.ndarray] | None:
    """The rebuild a batch applies first; the session then holds the context's ticks."""
    if context is None:
        return None
    melody = wire_to_frames(context.melody)
    sess.fed_until = len(melody)
    for t in [t for t in sess.melody if t < sess.fed_until]:
        del sess.melody[t]
    return melody, wire_to_frames(context.accompaniment)


def engine_item(sess, request: InferRequest) -> EngineRequest:
    """The engine's request: M[fed_until .. s) from ``fed_until``; a tick nobody sent is silence.
    The session counts as fed up to s from here on (the batch will feed it)."""
    s, start = request.request_tick, sess.fed_until
    empty = wire_to_frames([[]])[0]
    rows = [sess.melody.pop(t, empty) for t in range(start, s)]
    for t in [t for t in sess.melody if t < s]:
        del sess.melody[t]
    sess.fed_until = max(sess.fed_until, s)
    feed = np.stack(rows) if rows else np.zeros((0, vocab.FRAME_LEN), dtype=np.int16)
    return EngineRequest(sess.state, s, feed, request.gen_len, start)


def check_context(request: InferRequest) -> None:
    """A re-sent context's own checks (422): as many accompaniment as melody frames, none past s."""
    ctx = request.context
    if len(ctx.melody) != len(ctx.accompaniment):
        raise ApiError(422, "bad_request", f"context: {len(ctx.melody)} melody frames but {len(ctx.accompaniment)} accompaniment frames")
    if len(ctx.melody) > request.request_tick:
        raise ApiError(422, "out_of_range", f"context covers {len(ctx.melody)} ticks, past request_tick {request.request_tick}")


def session_sampling(settings: CreateSessionRequest):
    """The engine's sampling settings of a session."""
    from streammuse.model.sampling import Sampling

    s = settings.sampling
    return Sampling(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=settings.seed)
