"""The embedded server of ``streammuse jam``: the API app (with the jam page) on uvicorn.

One process, no Ray: :func:`~streammuse.serving.app.create_app` over a
:class:`~streammuse.serving.sessions.SessionStore` on one engine, served by uvicorn in
a background thread on a localhost port. Takes are written under ``runs``. Starting it
sets torch's thread count for this process to one core fewer than the machine has;
stopping it restores the count.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from streammuse.errors import StreamMuseError

START_TIMEOUT_S = 30.0


def leave_a_core() -> int:
    """The browser plays on this host too: torch gets one core fewer (as the embedded IPC
    server does); with torch on every core, each parallel region waits for the thread the
    browser preempted. Returns the thread count it replaced."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    return before


def warm_up(engine) -> None:
    """One throwaway request, so the musician's first answer is not the slow first call."""
    import numpy as np

    from streammuse.datasets import vocab

    engine.infer(engine.new_session(), request_tick=0, melody_frames=np.zeros((0, vocab.FRAME_LEN), dtype=np.int16),
                 gen_len=2)


class JamServer:
    """``with JamServer(engine, runs) as server: server.url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, engine, runs: Path, profile: dict | None = None, token: str | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine, self.runs, self.profile = engine, Path(runs), profile
        self.token = token if token is not None else (os.environ.get("STREAMMUSE_TOKEN") or None)
        self.host, self.port = host, port
        self._server = None
        self._thread: threading.Thread | None = None
        self._threads_before: int | None = None

    @property
    def url(self) -> str:
        """The server's base URL (the page is at ``url + '/jam/'``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "JamServer":
        """Start serving; returns once the port accepts connections."""
        import uvicorn

        from streammuse.serving.app import create_app
        from streammuse.serving.sessions import SessionStore

        self._threads_before = leave_a_core()
        warm_up(self.engine)
        app = create_app(SessionStore(self.engine), token=self.token)
        app.state.jam_runs, app.state.jam_profile = self.runs, self.profile
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", lifespan="off",
                                access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="streammuse-jam-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StreamMuseError(f"the jam server did not start on {self.host}:{self.port} (port taken?)")
            time.sleep(0.05)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def __enter__(self) -> "JamServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
