"""Run folders (docs/design.md section 5): ``runs/<date>-<setting>-I<I>-GL<GL>/``.

::

    manifest.json            every setting of the run
    songs/<name>.mid         the performance: true melody + accompaniment as played
    requests.parquet         one row per request (all songs)
    ticks.parquet            one row per song tick (all songs)
    done/<name>              one marker per finished song (``--resume`` skips these)
    parts/<name>.*.parquet   the same rows, per song, written when the song ends

A song's files are written when it ends, its done marker last, so an interrupted run
keeps every finished song. ``requests.parquet`` and ``ticks.parquet`` are rebuilt from
``parts/`` after each song.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import threading
from pathlib import Path

import pandas as pd

from streammuse.datasets.song import Song
from streammuse.datasets.tick_grid import song_to_midi
from streammuse.errors import StreamMuseError

from streammuse.runfolder import REQUEST_COLUMNS, SWITCH_COLUMNS, TICK_COLUMNS, done_songs, mark_done


def run_name(setting: str, interval: int, gen_len: int, date: dt.date | None = None) -> str:
    """``<date>-<setting>-I<I>-GL<GL>``."""
    date = date or dt.datetime.now(dt.timezone.utc).date()
    return f"{date.isoformat()}-{setting}-I{interval}-GL{gen_len}"


def new_run_dir(out: Path, setting: str, interval: int, gen_len: int) -> Path:
    """A fresh run folder under ``out`` (``-2``, ``-3``... when today's name is taken)."""
    base = run_name(setting, interval, gen_len)
    path, k = out / base, 1
    while path.exists():
        k += 1
        path = out / f"{base}-{k}"
    return path


# The manifest keys that fix what a run measures: --resume continues only a folder whose
# saved values equal the command's.
RESUME_KEYS = ("setting", "interval", "gen_len", "bpm", "clock", "server_time", "front", "servers", "profile", "seed",
               "sampling", "testset", "songs", "max_bars", "concurrency", "model_id", "adaptive")


def manifest(cfg, profile, songs, model_id: str, server_time_label: str) -> dict:
    """Every setting of a run (``cfg``: an experiment ``ReplayConfig``)."""
    import streammuse

    offline = cfg.setting == "offline"
    return {
        "setting": cfg.setting, "interval": 1 if offline else cfg.interval, "gen_len": 1 if offline else cfg.gen_len,
        "bpm": cfg.bpm, "clock": "none" if offline else cfg.clock,
        "server_time": "none" if offline else (cfg.server_time if cfg.clock == "sim" else "real"),
        "server_time_label": server_time_label, "front": cfg.front if cfg.clock == "sim" and not offline else "none",
        "servers": cfg.servers if cfg.clock == "sim" and not offline else "none",
        "server": cfg.server, "profile": profile.to_dict(), "seed": cfg.seed,
        "sampling": cfg.sampling.model_dump(), "model_id": model_id, "git_rev": git_rev(), "machine": machine(),
        "testset": str(Path(cfg.testset).resolve()), "songs": [s.name for s in songs], "max_bars": cfg.max_bars,
        "concurrency": cfg.concurrency,
        "adaptive": cfg.adaptive.to_dict() if cfg.adaptive is not None and not offline else None, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "streammuse_version": getattr(streammuse, "__version__", "0.1.0"),
    }


def _differences(saved: dict, wanted: dict) -> list[str]:
    return [k for k in RESUME_KEYS if json.dumps(saved.get(k), sort_keys=True, default=str)
            != json.dumps(wanted.get(k), sort_keys=True, default=str)]


def find_resumable(out: Path, wanted: dict) -> Path | None:
    """The newest run folder under ``out`` whose saved settings equal ``wanted``'s.

    Raises:
        StreamMuseError: none matches, but a folder for the same setting and (I, GL) has
            other settings (it is named, with what differs).
    """
    candidates = []
    for path in sorted(out.glob("*/manifest.json")) if out.is_dir() else []:
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        candidates.append((path.stat().st_mtime, path.parent, _differences(saved, wanted), saved))
    same = [c for c in candidates if not c[2]]
    if same:
        return max(same)[1]
    near = [c for c in candidates if all(c[3].get(k) == wanted[k] for k in ("setting", "interval", "gen_len"))]
    if near:
        _, folder, diff, saved = max(near, key=lambda c: c[0])
        shown = ", ".join(f"{k} {saved.get(k)!r} there, {wanted.get(k)!r} asked" for k in diff[:3])
        raise StreamMuseError(f"--resume: {folder} was run with other settings ({shown}); "
                              "drop --resume or use another --out")
    return None


def open_run_folder(cfg, profile, songs, model_id: str, server_time_label: str) -> RunWriter:
    """A new run folder with its manifest, or with ``cfg.resume`` the one to continue."""
    wanted = manifest(cfg, profile, songs, model_id, server_time_label)
    out = Path(cfg.out)
    if cfg.resume:
        found = find_resumable(out, wanted)
        if found is not None:
            return RunWriter(found)
    setting = cfg.setting if wanted["adaptive"] is None else f"{cfg.setting}-adaptive"
    writer = RunWriter(new_run_dir(out, setting, wanted["interval"], wanted["gen_len"]))
    writer.write_manifest(wanted)
    return writer


def git_rev() -> str:
    """The checkout's git revision ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict:
    """A short description of this machine for the manifest."""
    import os

    return {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}


class RunWriter:
    """Writes one run folder; thread-safe (songs may end at once)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write_manifest(self, manifest: dict) -> None:
        """Write ``manifest.json`` (creating the folder)."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    def read_manifest(self) -> dict:
        """The run's manifest."""
        try:
            return json.loads((self.path / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StreamMuseError(f"{self.path}: no readable manifest.json ({exc})") from None

    def add_to_manifest(self, fields: dict) -> None:
        """Merge ``fields`` into ``manifest.json``."""
        with self._lock:
            data = self.read_manifest()
            data.update(fields)
            self.write_manifest(data)

    def add_failed_song(self, name: str, reason: str) -> None:
        """Record in the manifest that song ``name`` could not be played (and why)."""
        with self._lock:
            data = self.read_manifest()
            data.setdefault("failed_songs", {})[name] = reason
            self.write_manifest(data)

    def done_songs(self) -> set[str]:
        """Names of the songs already finished."""
        return done_songs(self.path)

    def write_song(self, performance: Song, bpm: float, requests: list[dict], ticks: list[dict],
                   switches: list[dict] | None = None) -> None:
        """Write one finished song: MIDI, its rows, the merged tables, then its done marker
        (``switches``: an adaptive client's changes of pair, ``switches.parquet``)."""
        name = performance.name
        with self._lock:
            song_to_midi(performance, bpm=bpm, path=self.path / "songs" / f"{name}.mid")
            parts = self.path / "parts"
            parts.mkdir(parents=True, exist_ok=True)
            _frame(requests, REQUEST_COLUMNS).to_parquet(parts / f"{name}.requests.parquet", index=False)
            _frame(ticks, TICK_COLUMNS).to_parquet(parts / f"{name}.ticks.parquet", index=False)
            self._merge("requests", REQUEST_COLUMNS)
            self._merge("ticks", TICK_COLUMNS)
            if switches is not None:
                _frame(switches, SWITCH_COLUMNS).to_parquet(parts / f"{name}.switches.parquet", index=False)
                self._merge("switches", SWITCH_COLUMNS)
            mark_done(self.path, name)
            data = self.read_manifest()
            if name in data.get("failed_songs", {}):  # a resumed run played it after all
                del data["failed_songs"][name]
                self.write_manifest(data)

    def _merge(self, table: str, columns: list[str]) -> None:
        files = sorted((self.path / "parts").glob(f"*.{table}.parquet"))
        frames = [pd.read_parquet(f) for f in files]
        merged = pd.concat(frames, ignore_index=True) if frames else _frame([], columns)
        tmp = self.path / f".{table}.parquet.tmp"
        merged.to_parquet(tmp, index=False)
        tmp.replace(self.path / f"{table}.parquet")


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)
