"""The Local setting's server (paper section IV): client and server on one host.

The same FastAPI app and session core as ``serve`` and ``deploy``, served by uvicorn on
a Unix domain socket instead of TCP: no second protocol, no network stack, no injected
delay. ``python -m streammuse.serving.local SOCKET`` runs it; clients reach it as
``unix:///path/to.sock`` (``streammuse.client.transports.connect``).
"""

from __future__ import annotations

import argparse
import os
import socket
import stat

from streammuse.errors import StreamMuseError


def claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new server: a stale socket file (nobody listening) is
    removed; a live server there, or a file that is not a socket, is a StreamMuseError
    (asyncio would otherwise silently unlink a live server's socket and take its place)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StreamMuseError(f"{path} exists and is not a socket; pick another path")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # left behind by a server that died
            return
    raise StreamMuseError(f"{path}: another server is listening on this socket; stop it or pick another path")


def build_local_app(checkpoint: str | None = None, random_weights: bool = False):
    """The app over a real-time driver and a freshly loaded engine."""
    from streammuse.core.drivers import RealtimeDriver
    from streammuse.core.sessions import SessionCore
    from streammuse.model.engine import StreamingEngine
    from streammuse.serving.app import create_app

    engine = StreamingEngine.random("tiny", seed=0) if random_weights else StreamingEngine.load(checkpoint)
    return create_app(RealtimeDriver(SessionCore(engine)))


def main(argv: list[str] | None = None) -> None:
    """``python -m streammuse.serving.local SOCKET [--checkpoint DIR] [--random-weights] [--threads N]``."""
    parser = argparse.ArgumentParser(description="StreamMUSE Local server (HTTP on a Unix socket)")
    parser.add_argument("socket_path")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    try:
        claim_socket_path(args.socket_path)
    except StreamMuseError as exc:
        parser.exit(2, f"error: {exc}\n")
    import torch
    import uvicorn

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    app = build_local_app(args.checkpoint, args.random_weights)
    try:
        uvicorn.run(app, uds=args.socket_path, log_level="warning", access_log=False)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
