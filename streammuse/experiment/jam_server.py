"""The embedded server of ``streammuse jam``: the API app (with the jam page) on uvicorn.

One process, no Ray: :func:`~streammuse.serving.app.create_app` over the session core's
real-time driver on one engine, served by uvicorn in a background thread on a localhost
port. It gives the app the take writer (takes become run folders under ``runs``) and,
with a profile, the planner. Starting it
sets torch's thread count for this process to one core fewer than the machine has;
stopping it restores the count.
"""

from __future__ import annotations

import json
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
    from streammuse.serving.embedded import client_threads

    torch.set_num_threads(client_threads())
    return before


def take_writer(runs: Path):
    """``writer(take_json)``: validate a posted take, write its run folder, summarise it."""

    def write(body) -> dict:
        import pandas as pd
        from pydantic import ValidationError

        from streammuse.experiment.take import Take, write_take
        from streammuse.metrics import realtime

        try:
            take = Take.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise StreamMuseError(f"take: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        path = write_take(take, runs)
        ticks = pd.read_parquet(path / "ticks.parquet")
        jam = json.loads((path / "manifest.json").read_text()).get("jam", {})
        return {"run": str(path), "name": path.name, "isr": realtime.isr(ticks), "staleness": realtime.staleness(ticks),
                "isr_w": realtime.isr_w(ticks), "page_buffer_mismatches": jam.get("page_buffer_mismatches")}

    return write


def planner(profile: dict):
    """``planner(bpm) -> (I, GL)``: the planner's pair for ``profile`` (``streammuse plan``)."""
    from streammuse.planner.recommend import recommend

    return lambda bpm: recommend(profile, bpm)


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

        from streammuse.core.drivers import RealtimeDriver
        from streammuse.core.sessions import SessionCore
        from streammuse.serving.app import create_app

        self._threads_before = leave_a_core()
        warm_up(self.engine)
        app = create_app(RealtimeDriver(SessionCore(self.engine)), token=self.token)
        app.state.jam_take_writer = take_writer(self.runs)
        app.state.jam_planner = planner(self.profile) if self.profile is not None else None
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
