"""Self-describing session ids: ``<128 random bits>.<the session's settings>``.

The random half makes an id unguessable; the settings half (BPM, sampling, seed) lets
*any* replica rebuild the session from the context a client re-sends, because affinity
is a cache, not the source of truth.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets

from pydantic import ValidationError

from streammuse.contract import CreateSessionRequest, unknown_session

RANDOM_ID_BYTES = 16  # 128 bits: unguessable
MAX_ID_CHARS = 1024


def encode_session_id(request: CreateSessionRequest) -> str:
    """A fresh unguessable id carrying the session's settings."""
    settings = base64.urlsafe_b64encode(request.model_dump_json().encode()).rstrip(b"=").decode()
    return f"{secrets.token_urlsafe(RANDOM_ID_BYTES)}.{settings}"


def decode_session_id(session_id: str) -> CreateSessionRequest:
    """The settings inside ``session_id``; ApiError(unknown_session) if it is not one of ours."""
    random_part, _, settings = session_id.partition(".")
    if len(random_part) < 22 or not settings or len(session_id) > MAX_ID_CHARS:
        raise unknown_session("unknown session: malformed id")
    try:
        raw = base64.urlsafe_b64decode(settings + "=" * (-len(settings) % 4))
        return CreateSessionRequest.model_validate(json.loads(raw))
    except (binascii.Error, ValueError, ValidationError, UnicodeDecodeError):
        raise unknown_session("unknown session: malformed id") from None
