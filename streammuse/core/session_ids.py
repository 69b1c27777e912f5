"""Signed, self-describing session ids: ``<128 random bits>.<settings>.<signature>``.

The random half makes an id unguessable; the settings half (BPM, sampling, seed) lets
*any* replica rebuild the session from the context a client re-sends, because affinity
is a cache, not the source of truth; the signature (HMAC-SHA256 with the deployment's
secret, shared by its replicas) makes ids the server never issued, or edited ones,
unknown sessions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets

from pydantic import ValidationError

from streammuse.contract import CreateSessionRequest, unknown_session

RANDOM_ID_BYTES = 16  # 128 bits: unguessable
SIGNATURE_BYTES = 16  # 128 bits of HMAC-SHA256: unforgeable
MAX_ID_CHARS = 1024
SECRET_ENV = "STREAMMUSE_SESSION_SECRET"  # every replica of a deployment must share it


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def deployment_secret(secret: str | bytes | None = None) -> bytes:
    """The signing key: ``secret``, else ``$STREAMMUSE_SESSION_SECRET``, else a random
    one (fine for one process; replicas of one deployment must be given the same)."""
    secret = secret or os.environ.get(SECRET_ENV) or secrets.token_bytes(32)
    return secret.encode() if isinstance(secret, str) else secret


TAG_SEPARATOR = "~"  # not in urlsafe base64: ``<tag>~<random>`` in an id's first part


def routing_tag(session_id: str) -> str | None:
    """The replica tag an id carries (its first part's ``<tag>~``), or None."""
    first = session_id.split(".", 1)[0]
    tag, sep, _ = first.rpartition(TAG_SEPARATOR)
    return tag if sep and tag else None


class SessionIds:
    """Issues and checks the session ids of one deployment. ``tag`` (a replica's short id)
    is written into each id's random part, ``<tag>~<random>``, and signed with it: the
    router sends the session's requests to the replica that admitted it
    (``serving/router.py``)."""

    def __init__(self, secret: str | bytes | None = None, tag: str = "") -> None:
        self._key = deployment_secret(secret)
        if tag and (TAG_SEPARATOR in tag or "." in tag or not tag.isascii()):
            raise ValueError(f"session id tag {tag!r}: no '.', '~' or non-ASCII characters")
        self.tag = tag

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES])

    def encode(self, request: CreateSessionRequest) -> str:
        """A fresh unguessable, signed id carrying the session's settings."""
        random_part = secrets.token_urlsafe(RANDOM_ID_BYTES)
        if self.tag:
            random_part = f"{self.tag}{TAG_SEPARATOR}{random_part}"
        body = f"{random_part}.{_b64(request.model_dump_json().encode())}"
        return f"{body}.{self._sign(body)}"

    def decode(self, session_id: str) -> CreateSessionRequest:
        """The settings inside ``session_id``; ApiError(unknown_session) unless this
        deployment issued it unchanged."""
        body, _, signature = session_id.rpartition(".")
        random_part, _, settings = body.partition(".")
        if len(session_id) > MAX_ID_CHARS or len(random_part) < 22 or not settings:
            raise unknown_session("unknown session: malformed id")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise unknown_session("unknown session: not issued by this server")
        try:
            raw = base64.urlsafe_b64decode(settings + "=" * (-len(settings) % 4))
            return CreateSessionRequest.model_validate(json.loads(raw))
        except (binascii.Error, ValueError, ValidationError, UnicodeDecodeError):
            raise unknown_session("unknown session: malformed id") from None
