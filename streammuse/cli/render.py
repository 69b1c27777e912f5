"""`streammuse render`: a run folder's performances as audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_console = Console()


def render(
    run: Annotated[Path, typer.Argument(help="A run folder (replay or jam take).")],
    format: Annotated[str, typer.Option("--format", help="Audio format: wav.")] = "wav",
    out: Annotated[Path | None, typer.Option(help="Output folder; default RUN/audio.")] = None,
    song: Annotated[list[str] | None, typer.Option(help="Only this song (repeatable).")] = None,
) -> None:
    """Render each song of RUN (melody and accompaniment as played) with the jam page's voice."""
    from streammuse.audio.render import render_run

    for path in render_run(run, format, out, song):
        _console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add `render` to the streammuse app."""
    app.command("render")(render)
