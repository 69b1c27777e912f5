"""The jam page: play a melody in a browser and hear the accompaniment (``streammuse jam``).

:func:`mount_jam` adds the page to the API's FastAPI app, so every server that serves
the API (``serve``, ``deploy``, the embedded ``jam`` server) serves the page too:

* ``GET /jam/`` - the page (static files from ``jam_page/``, no build step, nothing
  fetched from elsewhere); it talks to the same JSON API (``/v1/sessions``...).
* ``GET /jam/config.json`` - whether this server keeps takes and has a planner profile,
  and the synth voice (``streammuse.audio.synth.VOICE``, shared with ``render``).
* ``GET /jam/plan?bpm=`` - the planner's (I, GL) for that BPM (only where
  ``app.state.jam_planner`` is set: ``jam --profile FILE``).
* ``POST /jam/takes`` - write a take as a run folder (only where ``app.state.jam_take_writer``
  is set: the embedded ``jam`` server, ``experiment.jam_server``; elsewhere the page
  downloads the take).

The take and the planner are given to the app as callables, so serving imports neither
the client's take rules nor the planner: imports go down the layers.

The page, its assets and the config need no token (the page asks for it); the take
and plan endpoints take the same bearer token as the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from streammuse.errors import StreamMuseError

PAGE_DIR = Path(__file__).with_name("jam_page")
DEFAULT_PAIR = (2, 5)  # the main job's pair; feasible on the shipped Local profile at 120 BPM


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status)


def _take_writer(request: Request):
    """``writer(take_json) -> {"run", "name", "isr", ...}``, or None: no takes kept here."""
    return getattr(request.app.state, "jam_take_writer", None)


def _planner(request: Request):
    """``planner(bpm) -> (I, GL)``, or None: no planner profile here."""
    return getattr(request.app.state, "jam_planner", None)


def mount_jam(app: FastAPI, dependencies: list | None = None) -> None:
    """Add the jam page and its endpoints to ``app``; ``dependencies``: the API's auth."""
    auth = list(dependencies or [])
    for key in ("jam_take_writer", "jam_planner"):
        if not hasattr(app.state, key):
            setattr(app.state, key, None)

    @app.get("/jam", include_in_schema=False)
    async def jam_redirect() -> RedirectResponse:
        return RedirectResponse("jam/")  # relative: keeps any route prefix

    @app.get("/jam/", include_in_schema=False)
    async def jam_page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/jam/config.json", include_in_schema=False)
    async def jam_config(request: Request) -> dict:
        from streammuse.audio.synth import VOICE

        return {"takes": _take_writer(request) is not None, "planner": _planner(request) is not None,
                "default_pair": list(DEFAULT_PAIR), "voice": VOICE}

    @app.get("/jam/plan", dependencies=auth, include_in_schema=False)
    async def jam_plan(request: Request, bpm: float = Query(..., gt=0, le=400)):
        planner = _planner(request)
        if planner is None:
            return _error(404, "no_profile", "this server has no planner profile (streammuse jam --profile FILE)")
        try:
            interval, gen_len = planner(bpm)
        except StreamMuseError as exc:
            return _error(422, "infeasible", str(exc))
        return {"interval": interval, "gen_len": gen_len, "bpm": bpm}

    @app.post("/jam/takes", dependencies=auth, include_in_schema=False)
    async def save_take(request: Request):
        """Write the take as a run folder (in a worker thread: it writes files)."""
        import asyncio

        writer = _take_writer(request)
        if writer is None:
            return _error(404, "takes_disabled", "this server keeps no takes: the page downloads take.json instead")
        try:
            body = await request.json()
        except ValueError as exc:
            return _error(400, "bad_request", f"malformed JSON: {exc}")
        try:
            return await asyncio.to_thread(writer, body)
        except StreamMuseError as exc:
            return _error(422, "bad_take", str(exc))

    app.mount("/jam/static", StaticFiles(directory=PAGE_DIR), name="jam-static")
