"""The contract between client and server: one leaf module both sides import.

It holds what both ends of a session must agree on and nothing else:

* the paper's constants: tau(BPM) (one tick, a 1/16 note, section III-A) and C, the
  longest generation (ISR_w's normaliser, section V-D), which is also the largest GL;
* the wire format (docs/design.md section 3): pydantic request / response models and
  frame <-> wire conversion. A frame on the wire is a list of notes
  ``[[pitch, duration_ticks], ...]`` (at most 4), so clients need no vocabulary;
* the affinity header, the error codes and :class:`ApiError`, the one way the session
  core refuses a request (HTTP answers it with its status, a client maps it back).

It imports only the data layer's ``vocab`` and tick unit (leaves themselves) and pydantic.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from streammuse.datasets import vocab
from streammuse.datasets.song import TICKS_PER_BEAT
from streammuse.errors import StreamMuseError

C = 32  # C in ISR_w (section V-D): no generation is longer
MAX_GEN_LEN = C
MAX_FRAMES_PER_REQUEST = 4096  # a re-sent context (rebuild) carries at most this many ticks
# A documented tempo range: below 20 BPM a tick lasts 750 ms (no longer "live"), above
# 400 BPM it is under 38 ms, shorter than one network round trip anywhere.
MIN_BPM, MAX_BPM = 20.0, 400.0
SESSION_HEADER = "x-session-id"  # consistent-hash affinity: the same session, the same replica

ErrorCode = Literal["unknown_session", "bad_request", "unauthorized", "too_large", "out_of_range",
                    "overloaded", "too_many_sessions", "internal_error", "session_mismatch", "not_found",
                    "method_not_allowed"]


def tau_ms(bpm: float) -> float:
    """tau = 60000 / (4 BPM): one tick (a 1/16 note) in ms."""
    return 60000.0 / (TICKS_PER_BEAT * bpm)


class ApiError(StreamMuseError):
    """A request the session core refuses: HTTP status, :data:`ErrorCode`, detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def unknown_session(detail: str = "unknown session: re-send the context") -> ApiError:
    """The distinct answer telling the client to rebuild with ``context`` (HTTP 404)."""
    return ApiError(404, "unknown_session", detail)


# -- wire models ---------------------------------------------------------------------
def _integral(value: object) -> object:
    """An ``integer`` field takes what JSON Schema's ``integer`` takes (issue 31): a JSON
    number with no fractional part, ``4`` or ``4.0`` (one value in JSON's data model, so a
    schema cannot tell them apart, and a client's JSON library may write either);
    never a string or a boolean, nor ``4.5``. The integral float becomes the int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # the strict int check refuses everything else (str, bool, 4.5, NaN)


# Numbers on the wire (issue 31): integer fields as above; number fields are strict floats
# (a JSON number, never a string like "120" or a boolean) and finite, so NaN and Infinity
# get their own message ("Input should be a finite number"), not a range's.
StrictInt = Annotated[int, BeforeValidator(_integral), Field(strict=True)]
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Pitch = Annotated[StrictInt, Field(ge=vocab.MIN_PITCH, le=vocab.MAX_PITCH)]
DurationTicks = Annotated[StrictInt, Field(ge=1, le=1024)]
WireNote = tuple[Pitch, DurationTicks]
WireFrame = Annotated[list[WireNote], Field(max_length=vocab.MAX_NOTES_PER_FRAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingSettings(_Strict):
    """Sampling settings of a session."""

    temperature: FiniteFloat = Field(1.0, gt=0.0, le=5.0)
    top_k: StrictInt = Field(0, ge=0, le=vocab.VOCAB_SIZE)
    top_p: FiniteFloat = Field(0.95, gt=0.0, le=1.0)


class CreateSessionRequest(_Strict):
    """POST /v1/sessions."""

    bpm: FiniteFloat = Field(120.0, ge=MIN_BPM, le=MAX_BPM)
    sampling: SamplingSettings = SamplingSettings()
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)


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

    request_tick: StrictInt = Field(..., ge=0, description="s: the first tick to generate")
    gen_len: StrictInt = Field(..., ge=1, le=MAX_GEN_LEN, description="GL: ticks to generate")
    melody: Annotated[list[WireFrame], Field(max_length=MAX_FRAMES_PER_REQUEST)] = []
    melody_start: StrictInt | None = Field(None, ge=0)
    context: SessionContext | None = None

    def chunk_start(self) -> int:
        """The first tick the melody chunk covers."""
        return self.melody_start if self.melody_start is not None else self.request_tick - len(self.melody)


class InferResponse(_Strict):
    """Answer to an infer request: ``ok`` with GL frames; ``superseded`` (a newer request
    of the session ran instead) or ``expired`` (it waited so long that its answer could
    no longer be played, core/deadlines.py) without frames. Either way the request's
    melody is kept."""

    status: Literal["ok", "superseded", "expired"]
    request_tick: int
    accompaniment: list[WireFrame] = []
    queue_ms: float = 0.0
    inference_ms: float = 0.0


class ErrorResponse(_Strict):
    """Any 4xx / 5xx answer. ``code`` is machine-readable (``unknown_session`` means:
    re-send the context)."""

    code: ErrorCode
    detail: str


# -- frames <-> wire -----------------------------------------------------------------
def frame_to_wire(frame: np.ndarray) -> list[list[int]]:
    """One token frame -> its notes ``[[pitch, duration_ticks], ...]`` (tokens after EOF ignored)."""
    notes = []
    for token in np.asarray(frame).tolist():
        if token == vocab.EOF:
            break
        if vocab.is_note(token):
            pitch, dur = vocab.token_to_note(token)
            notes.append([int(pitch), int(dur)])
    return notes


def frames_to_wire(frames: np.ndarray) -> list[list[list[int]]]:
    """Token frames ``(k, FRAME_LEN)`` -> ``k`` wire frames."""
    return [frame_to_wire(f) for f in np.asarray(frames)]


def wire_to_frames(wire: list) -> np.ndarray:
    """Wire frames -> token frames ``(k, FRAME_LEN)`` (notes sorted by pitch, then EOF, PAD)."""
    frames = np.full((len(wire), vocab.FRAME_LEN), vocab.PAD, dtype=np.int16)
    for i, notes in enumerate(wire):
        notes = sorted((int(p), int(d)) for p, d in notes)[: vocab.MAX_NOTES_PER_FRAME]
        for j, (pitch, dur) in enumerate(notes):
            frames[i, j] = vocab.note_to_token(pitch, dur)
        frames[i, len(notes)] = vocab.EOF
    return frames
