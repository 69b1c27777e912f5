"""Client-side transports: how the replay client, the profiler and the sim reach a server.

Blocking transports (``create_session``, ``infer``, ``close_session``, ``close``), safe
to call from several threads at once (the wall clock overlaps requests so that a newer
one can supersede an older one):

* :class:`HttpTransport`: HTTP/JSON to ``serve`` / ``deploy`` (TCP) or to the Local
  setting's server (the same app on a Unix socket);
* :class:`InProcessTransport`: the session core in this process, each request served
  at once by the core's rules (``core.drivers.run_now``).

Async fronts for the sim clock (``await create_session / infer / close_session``):

* :class:`CoreFront`: the session core's virtual driver, called directly;
* :class:`AsgiFront`: the real HTTP app in process (httpx's ASGI transport) over that
  same driver, so a simulation can run every byte of the code that ships.

Every path turns a refusal into the same exceptions: :class:`UnknownSession` (re-send the
context), :class:`ServerUnavailable` (unreachable, 5xx) or ``StreamMuseError`` (4xx).
"""

from __future__ import annotations

import threading

import os
from typing import Protocol

from streammuse.contract import (
    SESSION_HEADER,
    ApiError,
    CreateSessionRequest,
    CreateSessionResponse,
    ErrorResponse,
    InferRequest,
    InferResponse,
)
from streammuse.errors import StreamMuseError


class ServerUnavailable(StreamMuseError):
    """The server cannot be reached or failed (connection refused, timeout, 5xx).

    ``status``: the HTTP status when the server (or its proxy) answered, else None;
    ``timed_out``: no answer came within the caller's timeout (a deadline)."""

    def __init__(self, message: str, status: int | None = None, timed_out: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.timed_out = timed_out


class UnknownSession(StreamMuseError):
    """The server does not hold the session (gone, expired, other replica): re-send the context."""


class Transport(Protocol):
    """What the client needs from a server connection."""

    def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse: ...
    def infer(self, session_id: str, request: InferRequest) -> InferResponse: ...
    def close_session(self, session_id: str) -> None: ...
    def close(self) -> None: ...


def raise_for(status: int, body) -> None:
    """Map a server's error answer to the client's exceptions (nothing for < 400)."""
    if status < 400:
        return
    if status >= 500:
        raise ServerUnavailable(f"server error {status}", status)
    try:
        error = ErrorResponse.model_validate(body)
    except Exception:
        raise ServerUnavailable(f"server answered {status}") from None
    if error.code == "unknown_session":
        raise UnknownSession(error.detail)
    if status == 429:  # too_many_sessions: a refusal to retry later (Retry-After), as a 503
        raise ServerUnavailable(f"server refused the request (429 {error.code}): {error.detail}", status)
    raise StreamMuseError(f"server refused the request ({status} {error.code}): {error.detail}")


def _answer(response) -> object:
    """An HTTP answer's JSON body, or the client's exception for an error status. A body
    that is not JSON (a proxy's own error page: Ray Serve's for a dead replica) counts
    as no body; on a success status it is a server fault."""
    try:
        data = response.json() if response.content else None
    except ValueError:
        if response.status_code < 400:
            raise ServerUnavailable(f"answered {response.status_code} with a body that is not JSON",
                                    response.status_code) from None
        data = None
    raise_for(response.status_code, data)
    return data


def raise_api_error(exc: ApiError) -> None:
    """The core's refusal as the HTTP transport would have raised it."""
    raise_for(exc.status, {"code": exc.code, "detail": exc.detail})


def _dump(request: InferRequest) -> dict:
    return request.model_dump(exclude_none=True)


class HttpTransport:
    """HTTP/JSON (keep-alive; sends ``x-session-id`` for affinity) over TCP or a Unix socket."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        import httpx

        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        transport, base = None, self.url
        if self.url.startswith("unix://"):
            transport, base = httpx.HTTPTransport(uds=self.url[len("unix://"):]), "http://local"
        self.client = httpx.Client(base_url=base, headers=headers, timeout=timeout_s, transport=transport,
                                   limits=httpx.Limits(max_keepalive_connections=32))

    def _send(self, method: str, path: str, session_id: str | None = None, body=None, timeout_s: float | None = None):
        import httpx

        headers = {SESSION_HEADER: session_id} if session_id else {}
        extra = {} if timeout_s is None else {"timeout": timeout_s}
        try:
            response = self.client.request(method, path, json=body, headers=headers, **extra)
        except httpx.TimeoutException as exc:
            raise ServerUnavailable(f"{self.url}: no answer in time ({type(exc).__name__})", timed_out=True) from None
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{self.url}: {exc}") from None
        return _answer(response)

    def create_session(self, request: CreateSessionRequest, timeout_s: float | None = None) -> CreateSessionResponse:
        """POST /v1/sessions (``timeout_s``: give up after this long, default the transport's)."""
        return CreateSessionResponse.model_validate(
            self._send("POST", "/v1/sessions", body=request.model_dump(), timeout_s=timeout_s))

    def infer(self, session_id: str, request: InferRequest, timeout_s: float | None = None) -> InferResponse:
        """POST /v1/sessions/{id}/infer (raises UnknownSession / ServerUnavailable).

        ``timeout_s``: give up after this long (a real-time client's deadline: an answer
        later than the last tick it covers is of no use), default the transport's.
        """
        return InferResponse.model_validate(
            self._send("POST", f"/v1/sessions/{session_id}/infer", session_id, _dump(request), timeout_s))

    def close_session(self, session_id: str, timeout_s: float | None = None) -> None:
        """DELETE /v1/sessions/{id}."""
        self._send("DELETE", f"/v1/sessions/{session_id}", session_id, timeout_s=timeout_s)

    def health(self) -> bool:
        """True when the server answers /healthz."""
        return self._send("GET", "/healthz")["status"] == "ok"

    def probe(self, session_id: str | None = None, timeout_s: float = 0.5) -> bool:
        """True when /healthz answers ok within ``timeout_s``; with ``session_id`` it is
        routed as that session's requests are (``x-session-id``: Ray Serve's affinity),
        so it asks whether the session's replica is alive."""
        try:
            return self._send("GET", "/healthz", session_id, timeout_s=timeout_s)["status"] == "ok"
        except (StreamMuseError, KeyError, TypeError):
            return False

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class InProcessTransport:
    """The session core in this process; each request is served at once by its rules.

    A server with one worker: the wall clock calls it from many threads, and the core is
    not thread-safe (a request of a session whose previous one is still in the engine
    waits for it), so calls take turns.
    """

    def __init__(self, core) -> None:
        self.core = core
        self._turn = threading.Lock()

    def create_session(self, request: CreateSessionRequest, timeout_s: float | None = None) -> CreateSessionResponse:
        """Open a session (answered at once: ``timeout_s`` is not needed)."""
        with self._turn:
            return self.core.create(request)

    def infer(self, session_id: str, request: InferRequest, timeout_s: float | None = None) -> InferResponse:
        """Accompaniment for ticks s .. s+GL-1; ``inference_ms`` is the measured engine time."""
        from streammuse.core.drivers import run_now

        try:
            with self._turn:
                return run_now(self.core, session_id, request)
        except ApiError as exc:
            raise_api_error(exc)

    def close_session(self, session_id: str, timeout_s: float | None = None) -> None:
        """Close a session."""
        with self._turn:
            self.core.close(session_id)

    def probe(self, session_id: str | None = None, timeout_s: float = 0.5) -> bool:
        """Always alive: the core is in this process."""
        return True

    def close(self) -> None:
        """Nothing to release."""


class CoreFront:
    """The sim clock's direct path: the virtual driver's core, called in process."""

    def __init__(self, driver) -> None:
        self.driver = driver

    async def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse:
        """Open a session."""
        return self.driver.create(request)

    async def infer(self, session_id: str, request: InferRequest) -> InferResponse:
        """Submit at the driver's virtual now; answered when the simulation ends the batch."""
        try:
            return await self.driver.infer(session_id, InferRequest.model_validate(_dump(request)))
        except ApiError as exc:
            raise_api_error(exc)

    async def close_session(self, session_id: str) -> None:
        """Close a session."""
        self.driver.close(session_id)

    async def aclose(self) -> None:
        """Nothing to release."""


class AsgiFront:
    """The sim clock's HTTP path: the FastAPI app in process over httpx's ASGI transport."""

    def __init__(self, app) -> None:
        import httpx

        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")

    async def _send(self, method: str, path: str, session_id: str | None = None, body=None):
        headers = {SESSION_HEADER: session_id} if session_id else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        return _answer(response)

    async def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse:
        """POST /v1/sessions."""
        return CreateSessionResponse.model_validate(await self._send("POST", "/v1/sessions", body=request.model_dump()))

    async def infer(self, session_id: str, request: InferRequest) -> InferResponse:
        """POST /v1/sessions/{id}/infer."""
        return InferResponse.model_validate(await self._send("POST", f"/v1/sessions/{session_id}/infer", session_id, _dump(request)))

    async def close_session(self, session_id: str) -> None:
        """DELETE /v1/sessions/{id}."""
        await self._send("DELETE", f"/v1/sessions/{session_id}", session_id)

    async def aclose(self) -> None:
        """Close the client."""
        await self.client.aclose()


def connect(url: str, token: str | None = None) -> HttpTransport:
    """The transport for ``http(s)://host:port`` or ``unix:///path/to.sock`` (Local setting)."""
    if url.startswith(("http://", "https://", "unix://")):
        return HttpTransport(url, token=token or os.environ.get("STREAMMUSE_TOKEN"))
    raise StreamMuseError(f"server URL {url!r}: expected http://host:port or unix:///PATH")
