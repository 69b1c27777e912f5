"""`streammuse jam`: play a melody in the browser and hear the accompaniment."""

from __future__ import annotations

import signal
import threading
import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streammuse.errors import StreamMuseError

_console = Console()


def _engine(checkpoint: Path | None, random_weights: bool):
    from streammuse.model.engine import StreamingEngine

    if random_weights:
        return StreamingEngine.random("tiny", seed=0)
    if checkpoint is not None and not checkpoint.is_dir():
        raise StreamMuseError(f"--checkpoint: {checkpoint} is not a folder")
    return StreamingEngine.load(checkpoint)


def _attach(server: str, browser: bool) -> None:
    import httpx

    base = server.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise StreamMuseError(f"--server {server!r}: expected http://host:port")
    try:
        httpx.get(f"{base}/healthz", timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        raise StreamMuseError(f"server unreachable ({base}): {exc}") from None
    url = f"{base}/jam/"
    _console.print(f"jam page: [bold]{url}[/] (takes are downloaded as take.json: "
                   "`streammuse jam --import take.json` writes the run folder)")
    if browser:
        webbrowser.open(url)


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


def jam(
    server: Annotated[str | None, typer.Option(help="Attach to a running server (http://host:port) instead of starting one.")] = None,
    port: Annotated[int, typer.Option(help="Embedded server: port on 127.0.0.1 (0: any free port).")] = 0,
    out: Annotated[Path, typer.Option(help="Where takes are written (a run folder each).")] = Path("runs"),
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint folder; default: the shipped one.")] = None,
    random_weights: Annotated[bool, typer.Option(help="Random tiny weights (tests, speed; sounds random).")] = False,
    profile: Annotated[str | None, typer.Option(help="Latency profile (file, or local / local-server / remote) for the page's 'planner chooses (I, GL)'.")] = None,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open the page in the default browser.")] = True,
    import_take: Annotated[Path | None, typer.Option("--import", help="Write a downloaded take.json as a run folder under --out, then exit.")] = None,
) -> None:
    """Open the jam page: play a melody (MIDI or computer keyboard), hear the accompaniment, keep the take."""
    if import_take is not None:
        from streammuse.experiment.take import read_take, write_take

        _console.print(f"wrote {write_take(read_take(import_take), out)}")
        return
    if server is not None:
        _attach(server, browser)
        return
    from streammuse.experiment.jam_server import JamServer

    plan = None
    if profile is not None:
        from streammuse.planner.profile_fit import load_profile_dict

        plan = load_profile_dict(profile)
    with _console.status("loading the model ..."):
        engine = _engine(checkpoint, random_weights)
    with JamServer(engine, out, profile=plan, port=port) as jam_server:
        url = f"{jam_server.url}/jam/"
        _console.print(f"jam page: [bold]{url}[/]  (takes go to {out}/; Ctrl-C stops)")
        if browser:
            webbrowser.open(url)
        _wait_for_ctrl_c()
    _console.print("stopped")


def register(app: typer.Typer) -> None:
    """Add `jam` to the streammuse app."""
    app.command("jam")(jam)
