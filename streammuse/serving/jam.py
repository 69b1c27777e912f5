"""The jam page: play a melody in a browser and hear the accompaniment (``streammuse jam``).

:func:`mount_jam` adds the page to the API's FastAPI app, so every server that serves
the API (``serve``, ``deploy``, the embedded ``jam`` server) serves the page too:

* ``GET /jam/`` - the page (static files from ``jam_page/``, no build step, nothing
  fetched from elsewhere); it talks to the same JSON API (``/v1/sessions``...).
* ``GET /jam/config.json`` - whether this server keeps takes and has a planner profile,
  and the synth voice (``streammuse.audio.synth.VOICE``, shared with ``render``).
* ``GET /jam/plan?bpm=`` - the planner's (I, GL) for that BPM (only with a profile).
* ``POST /jam/takes`` - write a take as a run folder (only where ``app.state.jam_runs``
  names a folder: the embedded ``jam`` server; elsewhere the page downloads the take).

The page, its assets and the config need no token (the page asks for it); the take
and plan endpoints take the same bearer token as the API.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from streammuse.client.take import Take, write_take
from streammuse.errors import StreamMuseError

PAGE_DIR = Path(__file__).with_name("jam_page")
DEFAULT_PAIR = (2, 5)  # the main job's pair; feasible on the shipped Local profile at 120 BPM


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status)


def _runs_dir(request: Request) -> Path | None:
    runs = getattr(request.app.state, "jam_runs", None)
    return Path(runs) if runs else None


def _profile(request: Request) -> dict | None:
    return getattr(request.app.state, "jam_profile", None)


def mount_jam(app: FastAPI, dependencies: list | None = None) -> None:
    """Add the jam page and its endpoints to ``app``; ``dependencies``: the API's auth."""
    auth = list(dependencies or [])
    for key in ("jam_runs", "jam_profile"):
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

        return {"takes": _runs_dir(request) is not None, "planner": _profile(request) is not None,
                "default_pair": list(DEFAULT_PAIR), "voice": VOICE}

    @app.get("/jam/plan", dependencies=auth, include_in_schema=False)
    async def jam_plan(request: Request, bpm: float = Query(..., gt=0, le=400)):
        profile = _profile(request)
        if profile is None:
            return _error(404, "no_profile", "this server has no planner profile (streammuse jam --profile FILE)")
        from streammuse.planner.recommend import recommend

        try:
            interval, gen_len = recommend(profile, bpm)
        except StreamMuseError as exc:
            return _error(422, "infeasible", str(exc))
        return {"interval": interval, "gen_len": gen_len, "bpm": bpm}

    @app.post("/jam/takes", dependencies=auth, include_in_schema=False)
    def save_take(take: Take, request: Request):
        """Write the take as a run folder (a sync route: FastAPI runs it off the event loop)."""
        runs = _runs_dir(request)
        if runs is None:
            return _error(404, "takes_disabled", "this server keeps no takes: the page downloads take.json instead")
        try:
            path = write_take(take, runs)
        except StreamMuseError as exc:
            return _error(422, "bad_take", str(exc))
        return {"run": str(path), "name": path.name, **_summary(path)}

    app.mount("/jam/static", StaticFiles(directory=PAGE_DIR), name="jam-static")


def _summary(run: Path) -> dict:
    """ISR, Staleness and ISR_w of the written take, as Python computes them."""
    import pandas as pd

    from streammuse.metrics import realtime

    ticks = pd.read_parquet(run / "ticks.parquet")
    jam = json.loads((run / "manifest.json").read_text()).get("jam", {})
    return {"isr": realtime.isr(ticks), "staleness": realtime.staleness(ticks), "isr_w": realtime.isr_w(ticks),
            "page_buffer_mismatches": jam.get("page_buffer_mismatches")}
