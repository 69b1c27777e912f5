"""The wire format shared by the server and the client (HTTP and IPC alike).

A frame on the wire is a list of notes ``[[pitch, duration_ticks], ...]`` (at most
4 per frame), so clients need no knowledge of the token vocabulary.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from streammuse.datasets import vocab

MAX_GEN_LEN = 32  # C in ISR_w (section V-D) is 32: no generation is longer
MAX_FRAMES_PER_REQUEST = 4096  # a re-sent context (rebuild) carries at most this many ticks

Pitch = Annotated[int, Field(ge=vocab.MIN_PITCH, le=vocab.MAX_PITCH)]
DurationTicks = Annotated[int, Field(ge=1, le=1024)]
WireNote = tuple[Pitch, DurationTicks]
WireFrame = Annotated[list[WireNote], Field(max_length=vocab.MAX_NOTES_PER_FRAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingSettings(_Strict):
    """Sampling settings of a session."""

    temperature: float = Field(1.0, gt=0.0, le=5.0)
    top_k: int = Field(0, ge=0, le=vocab.VOCAB_SIZE)
    top_p: float = Field(0.95, gt=0.0, le=1.0)


class CreateSessionRequest(_Strict):
    """POST /v1/sessions."""

    bpm: float = Field(120.0, gt=0.0, le=400.0)
    sampling: SamplingSettings = SamplingSettings()
    seed: int = Field(0, ge=0, le=2**31 - 1)


class CreateSessionResponse(_Strict):
    """Answer to POST /v1/sessions; ``session_id`` is unguessable (128 random bits)."""

    session_id: str
    max_gen_len: int = MAX_GEN_LEN
    # Which checkpoint answers: run manifests record it, so reports can tell models apart.
    model_id: str = ""


class SessionContext(_Strict):
    """The context a client re-sends when its session is gone from the server.

    ``melody`` holds the true melody frames for ticks ``0 .. len-1`` and
    ``accompaniment`` the accompaniment the client played for the same ticks.
    """

    melody: Annotated[list[WireFrame], Field(max_length=MAX_FRAMES_PER_REQUEST)]
    accompaniment: Annotated[list[WireFrame], Field(max_length=MAX_FRAMES_PER_REQUEST)]


class InferRequest(_Strict):
    """POST /v1/sessions/{id}/infer: accompaniment for ticks s .. s+GL-1.

    ``melody`` holds the true melody frames for ticks ``melody_start .. s-1`` that the
    server has not seen yet (``melody_start`` defaults to ``s - len(melody)``).
    """

    request_tick: int = Field(..., ge=0, description="s: the first tick to generate")
    gen_len: int = Field(..., ge=1, le=MAX_GEN_LEN, description="GL: ticks to generate")
    melody: Annotated[list[WireFrame], Field(max_length=MAX_FRAMES_PER_REQUEST)] = []
    melody_start: int | None = Field(None, ge=0)
    context: SessionContext | None = None


class InferResponse(_Strict):
    """Answer to an infer request."""

    status: Literal["ok", "superseded"]
    request_tick: int
    accompaniment: list[WireFrame] = []
    queue_ms: float = 0.0
    inference_ms: float = 0.0


class ErrorResponse(_Strict):
    """Any 4xx answer. ``code`` is machine-readable (``unknown_session`` means: re-send
    the context)."""

    code: Literal["unknown_session", "bad_request", "unauthorized", "too_large", "out_of_range"]
    detail: str
