"""What one infer request costs per transport, against the engine's share of it (issue 14, item 4).

One session sends requests one after another (I = 1: each request carries one true melody
frame, the melody of the first test song) through each path, for GL = 1 and GL = 3:

* ``in-process``: the session core called in this process (``InProcessTransport``, no HTTP);
* ``uvicorn tcp``: the same FastAPI app and core, served by plain uvicorn on TCP in a child
  process (no Ray);
* ``uvicorn unix``: the Local setting's server (the app on a Unix socket, child process);
* ``ray serve``: the Serve app on a local Ray instance, one replica (HTTP proxy actor ->
  replica actor), as ``streammuse serve`` runs it.

For every request it records the client's round trip and the server's own figures from the
response: ``inference_ms`` (the engine's compute for this request) and ``queue_ms`` (the
batching window). ``rest`` = RTT - engine - queue is what the transport and the web
framework cost. Every server runs torch on one thread (a Ray replica with ``num_cpus=1``).

    PYTHONPATH=. .venv/bin/python bench/transport_cost.py [--requests 200] [--paths in-process,uvicorn-tcp,uvicorn-unix,ray]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from streammuse.client.transports import HttpTransport, InProcessTransport
from streammuse.contract import CreateSessionRequest, InferRequest, frames_to_wire

PATHS = ("in-process", "uvicorn-tcp", "uvicorn-unix", "ray")
WARMUP = 20


@dataclass
class Samples:
    """Per-request figures (ms) of one path and GL."""

    rtt: np.ndarray
    engine: np.ndarray
    queue: np.ndarray

    @property
    def rest(self) -> np.ndarray:
        """RTT - engine - queue: the transport's and the framework's share."""
        return self.rtt - self.engine - self.queue


def melody_wire(n: int) -> list:
    """The first test song's melody, ``n`` ticks as wire frames (repeated if shorter)."""
    from streammuse.datasets.frames import song_to_frames
    from streammuse.datasets.testset import load_testset

    melody = song_to_frames(load_testset("testset", max_bars=64)[0])[0]
    reps = -(-n // len(melody))
    return frames_to_wire(np.concatenate([melody] * reps)[:n])


def run_session(transport, gen_len: int, requests: int, gap_ms: float, melody: list, seed: int) -> Samples:
    """One session: request tick s = 1, 2, ... with one new melody frame each."""
    sid = transport.create_session(CreateSessionRequest(seed=seed)).session_id
    rtt, engine, queue = [], [], []
    for s in range(1, WARMUP + requests + 1):
        request = InferRequest(request_tick=s, gen_len=gen_len, melody=[melody[s - 1]], melody_start=s - 1)
        t0 = time.perf_counter()
        answer = transport.infer(sid, request)
        took = (time.perf_counter() - t0) * 1000
        if s > WARMUP and answer.status == "ok":
            rtt.append(took)
            engine.append(answer.inference_ms)
            queue.append(answer.queue_ms)
        time.sleep(gap_ms / 1000)
    transport.close_session(sid)
    return Samples(np.array(rtt), np.array(engine), np.array(queue))


def _child_uvicorn(port: int) -> None:
    """The child process of ``uvicorn-tcp``: the app over a fresh engine on 127.0.0.1:port."""
    import torch
    import uvicorn

    from streammuse.serving.local import build_local_app

    torch.set_num_threads(1)
    uvicorn.run(build_local_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _start_uvicorn_tcp():
    """(url, stop) of a plain uvicorn server in a child process."""
    import httpx

    from streammuse.serving.raylocal import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, __file__, "--child-uvicorn", str(port)], env=env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return url, stop


def open_path(path: str):
    """(transport, stop) for one path."""
    if path == "in-process":
        import torch

        from streammuse.core.sessions import SessionCore
        from streammuse.model.engine import StreamingEngine

        torch.set_num_threads(1)
        return InProcessTransport(SessionCore(StreamingEngine.load())), lambda: None
    if path == "uvicorn-tcp":
        url, stop = _start_uvicorn_tcp()
        return HttpTransport(url), stop
    from streammuse.serving.embedded import start_server

    server = start_server("local") if path == "uvicorn-unix" else start_server("ray", num_cpus=1.0)
    return HttpTransport(server.url), server.stop


def _cell(x: np.ndarray) -> str:
    return f"{np.median(x):.1f} / {np.percentile(x, 95):.1f}"


def main(argv: list[str] | None = None) -> None:
    """Every path x GL in (1, 3); prints one table of median / p95 ms."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=10.0, help="pause between a response and the next request")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--child-uvicorn", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_uvicorn:
        return _child_uvicorn(args.child_uvicorn)
    melody = melody_wire(WARMUP + args.requests + 1)
    table = Table(title=f"one request, one session, I = 1 (median / p95 ms over {args.requests} requests)")
    for col in ("path", "GL", "RTT", "engine", "queue (batch window)", "rest = transport + framework", "engine share"):
        table.add_column(col, justify="right")
    for path in args.paths.split(","):
        transport, stop = open_path(path)
        try:
            for k, gl in enumerate((1, 3)):
                got = run_session(transport, gl, args.requests, args.gap_ms, melody, seed=k)
                share = np.median(got.engine) / np.median(got.rtt)
                table.add_row(path, str(gl), _cell(got.rtt), _cell(got.engine), _cell(got.queue), _cell(got.rest),
                              f"{share:.0%}")
        finally:
            transport.close()
            stop()
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
