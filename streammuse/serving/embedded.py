"""Servers started on this machine for one command (replay, profile, tests): a URL and a stop.

* ``local``: the Local setting's server (``serving.local``: the app on a Unix socket) in a
  child process; its URL is ``unix:///.../server.sock``.
* ``ray``: the Serve app on a local Ray instance (one CPU replica unless told otherwise);
  its URL is ``http://127.0.0.1:PORT``.

Both serve the same FastAPI app over the same session core as ``serve`` and ``deploy``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from streammuse.errors import StreamMuseError


@dataclass
class EmbeddedServer:
    """A server this process started: where it listens, and how to stop it."""

    url: str
    stop: Callable[[], None]


def client_threads() -> int:
    """Torch threads for a server that shares this host with the replay client.

    The client needs a core: with torch on every core, each parallel region waits for
    the thread the client preempted (on 2 cores the main job's requests took 152 ms
    instead of 72 ms, and 91 % of them came back late).
    """
    return max(1, (os.cpu_count() or 2) - 1)


def start_server(kind: str = "local", checkpoint: str | None = None, random_weights: bool = False,
                 timeout_s: float = 120.0, **options) -> EmbeddedServer:
    """Start a ``local`` (Unix socket, child process) or ``ray`` (local Ray Serve) server.

    Raises:
        StreamMuseError: it did not start (one line saying why).
    """
    if kind == "local":
        return _start_local(checkpoint, random_weights, timeout_s)
    if kind == "ray":
        from streammuse.serving.raylocal import start_local, stop_local

        # One client (this replay): a fixed capacity, not one measured for a plan it may not follow.
        opts = {"min_replicas": 1, "max_replicas": 1, "checkpoint": checkpoint, "random_weights": random_weights,
                "max_sessions": 256, "max_sessions_per_client": 0, **options}
        return EmbeddedServer(start_local(opts), stop_local)
    raise StreamMuseError(f"embedded server kind {kind!r}: expected 'local' or 'ray'")


def _start_local(checkpoint: str | None, random_weights: bool, timeout_s: float) -> EmbeddedServer:
    import httpx

    folder = tempfile.mkdtemp(prefix="streammuse-local-")
    path = os.path.join(folder, "server.sock")
    cmd = [sys.executable, "-m", "streammuse.serving.local", path, "--threads", str(client_threads())]
    cmd += ["--checkpoint", checkpoint] if checkpoint else []
    cmd += ["--random-weights"] if random_weights else []
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://local", timeout=2.0) as probe:
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise StreamMuseError(f"the embedded Local server did not start (exit code {process.poll()})")
            if os.path.exists(path):
                with contextlib.suppress(httpx.HTTPError):
                    if probe.get("/healthz").status_code == 200:
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

    return EmbeddedServer(f"unix://{path}", stop)
