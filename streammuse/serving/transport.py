"""Client-side transports: how the replay client and the profiler reach a server.

All share the Transport protocol (``create_session``, ``infer``, ``close_session``,
``close``) and are safe to call from several threads at once (the wall clock overlaps
requests so that a newer one can supersede an older one).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

from streammuse.errors import StreamMuseError
from streammuse.serving.ipc import HEADER, MAX_MESSAGE_BYTES, encode_message
from streammuse.serving.protocol import CreateSessionRequest, CreateSessionResponse, ErrorResponse, InferRequest, InferResponse

SESSION_HEADER = "x-session-id"


class ServerUnavailable(StreamMuseError):
    """The server cannot be reached or failed (connection refused, timeout, 5xx)."""


class UnknownSession(StreamMuseError):
    """The server does not hold the session (gone, expired, other replica): re-send the context."""


class Transport(Protocol):
    """What the client needs from a server connection."""

    def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse: ...
    def infer(self, session_id: str, request: InferRequest) -> InferResponse: ...
    def close_session(self, session_id: str) -> None: ...
    def close(self) -> None: ...


def _raise_for(status: int, body) -> None:
    if status < 400:
        return
    try:
        error = ErrorResponse.model_validate(body)
    except Exception:
        raise ServerUnavailable(f"server answered {status}") from None
    if error.code == "unknown_session":
        raise UnknownSession(error.detail)
    raise StreamMuseError(f"server refused the request ({status} {error.code}): {error.detail}")


class _OpenSession:
    def open_session(self, request: CreateSessionRequest) -> str:
        """The new session's id (``create_session(...).session_id``)."""
        return self.create_session(request).session_id


class HttpTransport(_OpenSession):
    """HTTP/JSON to a StreamMUSE server (keep-alive; sends ``x-session-id`` for affinity)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        import httpx

        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s,
                                   limits=httpx.Limits(max_keepalive_connections=32))

    def _send(self, method: str, path: str, session_id: str | None = None, body=None):
        import httpx

        headers = {SESSION_HEADER: session_id} if session_id else {}
        try:
            response = self.client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{self.url}: {exc}") from None
        if response.status_code >= 500:
            raise ServerUnavailable(f"{self.url}: server error {response.status_code}")
        data = response.json() if response.content else None
        _raise_for(response.status_code, data)
        return data

    def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse:
        """POST /v1/sessions."""
        return CreateSessionResponse.model_validate(self._send("POST", "/v1/sessions", body=request.model_dump()))

    def infer(self, session_id: str, request: InferRequest) -> InferResponse:
        """POST /v1/sessions/{id}/infer (raises UnknownSession / ServerUnavailable)."""
        data = self._send("POST", f"/v1/sessions/{session_id}/infer", session_id, request.model_dump(exclude_none=True))
        return InferResponse.model_validate(data)

    def close_session(self, session_id: str) -> None:
        """DELETE /v1/sessions/{id}."""
        self._send("DELETE", f"/v1/sessions/{session_id}", session_id)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class IpcTransport(_OpenSession):
    """Length-prefixed JSON over a Unix domain socket (the Local setting); one pooled
    connection per concurrent call."""

    def __init__(self, socket_path: str | Path, timeout_s: float = 30.0) -> None:
        self.socket_path, self.timeout_s = str(socket_path), timeout_s
        self._pool: queue.SimpleQueue = queue.SimpleQueue()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise ServerUnavailable(f"ipc://{self.socket_path}: {exc}") from None
        return sock

    def _call(self, message: dict):
        try:
            sock = self._pool.get_nowait()
        except queue.Empty:
            sock = self._connect()
        try:
            sock.sendall(encode_message(message))
            (length,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
            answer = json.loads(_recv_exactly(sock, min(length, MAX_MESSAGE_BYTES)))
        except OSError as exc:
            sock.close()
            raise ServerUnavailable(f"ipc://{self.socket_path}: {exc}") from None
        self._pool.put(sock)
        _raise_for(answer["status"], answer["body"])
        return answer["body"]

    def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse:
        """Open a session."""
        return CreateSessionResponse.model_validate(self._call({"op": "create", "body": request.model_dump()}))

    def infer(self, session_id: str, request: InferRequest) -> InferResponse:
        """Accompaniment for ticks s .. s+GL-1 (raises UnknownSession / ServerUnavailable)."""
        body = request.model_dump(exclude_none=True)
        return InferResponse.model_validate(self._call({"op": "infer", "session_id": session_id, "body": body}))

    def close_session(self, session_id: str) -> None:
        """Close a session."""
        self._call({"op": "close", "session_id": session_id})

    def health(self) -> bool:
        """True when the server answers."""
        return self._call({"op": "health"})["status"] == "ok"

    def close(self) -> None:
        """Close pooled connections."""
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError("server closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def connect(url: str, token: str | None = None) -> Transport:
    """The transport for ``http(s)://host:port`` or ``ipc:///path/to.sock``."""
    if url.startswith(("http://", "https://")):
        return HttpTransport(url, token=token or os.environ.get("STREAMMUSE_TOKEN"))
    if url.startswith("ipc://"):
        return IpcTransport(url[len("ipc://"):])
    raise StreamMuseError(f"server URL {url!r}: expected http://host:port or ipc://PATH")


class EmbeddedServer:
    """A local server started here; ``with`` it for its transport, or call ``stop()``."""

    def __init__(self, transport: Transport, stop) -> None:
        self.transport, self._stop = transport, stop

    def stop(self) -> None:
        """Close the transport and stop the server (idempotent)."""
        if self._stop is not None:
            self.transport.close()
            self._stop()
            self._stop = None

    def __enter__(self) -> Transport:
        return self.transport

    def __exit__(self, *exc) -> None:
        self.stop()


def start_embedded(kind: str = "ipc", checkpoint: str | Path | None = None, random_weights: bool = False,
                   timeout_s: float = 120.0, **options) -> EmbeddedServer:
    """Start a local server: ``ipc`` (a child process on a Unix socket) or ``ray``/``http``
    (the Serve app on a local Ray instance, one CPU replica unless ``options`` say otherwise)."""
    ckpt = str(checkpoint) if checkpoint is not None else None
    if kind == "ipc":
        return _start_ipc(ckpt, random_weights, timeout_s)
    if kind in ("ray", "http"):
        return _start_ray(ckpt, random_weights, **options)
    raise StreamMuseError(f"embedded server kind {kind!r}: expected 'ipc' or 'ray'")


def _start_ipc(checkpoint: str | None, random_weights: bool, timeout_s: float) -> EmbeddedServer:
    folder = tempfile.mkdtemp(prefix="streammuse-ipc-")
    path = os.path.join(folder, "server.sock")
    cmd = [sys.executable, "-m", "streammuse.serving.ipc", path]
    cmd += ["--checkpoint", checkpoint] if checkpoint else []
    cmd += ["--random-weights"] if random_weights else []
    # The client shares this host: leave it a core. With torch on every core, each
    # parallel region waits for the thread the client preempted (on 2 cores the main
    # job's requests took 152 ms instead of 72 ms, and 91 % of them came back late).
    cmd += ["--threads", str(max(1, (os.cpu_count() or 2) - 1))]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    transport = IpcTransport(path)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ServerUnavailable(f"the embedded IPC server did not start (exit code {process.poll()})")
        if os.path.exists(path):
            with contextlib.suppress(ServerUnavailable):
                if transport.health():
                    break
        time.sleep(0.2)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(folder)

    return EmbeddedServer(transport, stop)


def _start_ray(checkpoint: str | None, random_weights: bool, **options) -> EmbeddedServer:
    from streammuse.serving.raylocal import start_local, stop_local

    opts = {"min_replicas": 1, "max_replicas": 1, "checkpoint": checkpoint, "random_weights": random_weights, **options}
    url = start_local(opts)
    return EmbeddedServer(HttpTransport(url, token=os.environ.get("STREAMMUSE_TOKEN")), stop_local)
