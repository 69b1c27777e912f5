"""`streammuse evaluate`: score a run folder (docs/design.md section 5) by the paper's metrics.

Writes ``RUN/metrics/per_song.parquet`` (one row per song) and ``RUN/metrics/summary.json``
(the aggregate, the songs it covers and every problem found). Aggregates:

* ISR, Staleness, ISR_w: over all ticks of all songs (the paper's 1/N over the run);
* CR, UR, DR: pooled over all melody ticks (songs weighted by melody duration);
* JSD(P), JSD(O), FMD: one score for the set (pooled histograms / one Gaussian per side);
* NLL_wavg: total nats over total tokens;
* muspy's standard metrics (pitch-class entropy, scale consistency, groove consistency,
  empty-beat rate, polyphony) of the played and of the ground-truth accompaniment, per
  song in ``per_song.parquet`` and as the mean over songs in ``summary["muspy"]``.

Offline runs (setting ``offline``) get music metrics only. A song listed in the manifest
but not finished, or whose MIDI cannot be read, is left out and named in ``problems``;
every aggregate states how many songs it covers (``n_songs`` of ``n_songs_expected``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from streammuse.datasets.song import Song, merge_unisons, note_array
from streammuse.runfolder import done_songs
from streammuse.errors import StreamMuseError
from streammuse.metrics import adaptive, distributions, muspy_metrics, realtime
from streammuse.metrics.harmonicity import Harmonicity, harmonicity
from streammuse.metrics.nll import SongNll, nll_wavg, song_nll

METRIC_KEYS = ("jsd_pitch", "jsd_onset", "fmd", "cr", "ur", "dr", "nll_wavg", "isr", "staleness", "isr_w")
SYSTEM_KEYS = ("isr", "staleness", "isr_w")


@dataclass
class RunData:
    """What a run folder holds, as far as it could be read."""

    path: Path
    manifest: dict
    performances: list[Song]
    ticks: pd.DataFrame | None
    problems: list[str] = field(default_factory=list)

    @property
    def setting(self) -> str:
        """The run's setting (local, local-server, remote, offline)."""
        return str(self.manifest.get("setting", "unknown"))

    @property
    def expected_songs(self) -> list[str]:
        """The songs the manifest says the run plays."""
        return list(self.manifest.get("songs") or [])


def read_manifest(run: Path) -> dict:
    """The run's manifest; StreamMuseError when the folder is not a run folder."""
    if not run.is_dir():
        raise StreamMuseError(f"{run}: no such run folder")
    try:
        manifest = json.loads((run / "manifest.json").read_text())
    except FileNotFoundError:
        raise StreamMuseError(f"{run}: incomplete run folder (no manifest.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StreamMuseError(f"{run}: unreadable manifest.json ({exc})") from None
    missing = [k for k in ("setting", "interval", "gen_len", "songs") if k not in manifest]
    if missing:
        raise StreamMuseError(f"{run}: manifest.json lacks {', '.join(missing)}")
    return manifest


def read_performance(path: Path) -> Song:
    """A performance MIDI (tracks ``melody`` and ``accompaniment``; either may be empty)."""
    from streammuse.datasets.tick_grid import read_grid_midi

    grid = read_grid_midi(path)
    parts = {"melody": [], "accompaniment": []}
    for track in grid.tracks:
        if track.name.lower() in parts:
            parts[track.name.lower()].append(track.notes)
    melody, acc = (merge_unisons(note_array(np.concatenate(p) if p else ())) for p in parts.values())
    return Song(path.stem, melody, acc, grid.time_signatures, str(path))


def read_run(run: str | Path) -> RunData:
    """Read a run folder, collecting (not raising) problems with individual songs."""
    run = Path(run)
    manifest = read_manifest(run)
    problems: list[str] = []
    done = done_songs(run)
    performances = []
    not_done = [n for n in manifest["songs"] if n not in done]
    if not_done:
        problems.append(f"{len(not_done)} of {len(manifest['songs'])} songs not finished: {_names(not_done)}")
    for name in manifest["songs"]:
        if name not in done:
            continue
        try:
            performances.append(read_performance(run / "songs" / f"{name}.mid"))
        except StreamMuseError as exc:
            problems.append(f"song {name} left out: {exc}")
    ticks = None
    if manifest["setting"] != "offline":
        try:
            ticks = pd.read_parquet(run / "ticks.parquet")
        except (OSError, ValueError) as exc:
            problems.append(f"no readable ticks.parquet ({type(exc).__name__}): system metrics left out")
    return RunData(run, manifest, performances, ticks, problems)


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_truth(data: RunData) -> dict[str, Song]:
    """Ground truth of the run's songs from the test set named in the manifest (cropped to
    the run's ``max_bars``); problems are recorded, songs not found are left out."""
    from streammuse.datasets.testset import load_testset

    folder = data.manifest.get("testset")
    names = [p.name for p in data.performances]
    if not folder and data.setting == "jam":
        data.problems.append("a jam take has no ground truth: JSD and FMD left out")
        return {}
    if not folder or not Path(folder).is_dir():
        data.problems.append(f"test set {folder!r} not found: JSD and FMD left out")
        return {}
    available = {p.stem for p in Path(folder).glob("*.mid")}
    missing = [n for n in names if n not in available]
    if missing:
        data.problems.append(f"{len(missing)} songs not in the test set {folder}: {_names(missing)}")
    try:
        songs = load_testset(folder, songs=[n for n in names if n in available], max_bars=data.manifest.get("max_bars"))
    except StreamMuseError as exc:
        data.problems.append(f"test set unreadable ({exc}): JSD and FMD left out")
        return {}
    return {s.name: s for s in songs}


def per_song_table(data: RunData, nlls: dict[str, SongNll],
                   truth: dict[str, Song] | None = None) -> tuple[pd.DataFrame, dict[str, Harmonicity]]:
    """One row per performance: harmonicity, system metrics, NLL, and muspy's metrics of
    the played and the ground-truth accompaniment (``*_played``, ``*_truth``)."""
    rows, harm = [], {}
    truth = truth or {}
    ticks = data.ticks.groupby("song") if data.ticks is not None and len(data.ticks) else None
    groups = dict(list(ticks)) if ticks is not None else {}
    for perf in data.performances:
        h = harm[perf.name] = harmonicity(perf.melody, perf.accompaniment)
        row = {"song": perf.name, "melody_ticks": h.melody_ticks, "cr": h.cr, "ur": h.ur, "dr": h.dr}
        t = groups.get(perf.name)
        row["n_ticks"] = len(t) if t is not None else 0
        for key in SYSTEM_KEYS:
            row[key] = getattr(realtime, key)(t) if t is not None else math.nan
        n = nlls.get(perf.name)
        row["nll_sum_nats"] = n.nll_sum_nats if n else math.nan
        row["nll_tokens"] = n.n_tokens if n else 0
        row["nll"] = n.per_token if n else math.nan
        true = truth.get(perf.name)
        signatures = true.time_signatures if true is not None else perf.time_signatures
        row.update(muspy_metrics.song_metrics(perf.accompaniment, None if true is None else true.accompaniment,
                                              signatures))
        rows.append(row)
    return pd.DataFrame(rows), harm


def _engine_for(data: RunData, engine):
    """The engine to score NLL with: an engine, a zero-argument loader, or None for the
    shipped checkpoint. A load that fails leaves NLL out with the reason as a problem."""
    try:
        if engine is None:
            from streammuse.model.engine import StreamingEngine

            return StreamingEngine.load()
        return engine if hasattr(engine, "nll") else engine()
    except ImportError:
        data.problems.append("no model engine in this install: NLL_wavg left out")
    except StreamMuseError as exc:
        data.problems.append(f"NLL_wavg left out: {exc}")
    return None


def evaluate_run(run: str | Path, engine=None, with_nll: bool = True, with_fmd: bool = True,
                 fmd_extractor="auto", write: bool = True) -> dict:
    """Score one run folder; returns the summary (also written to ``RUN/metrics/``).

    ``engine``: the StreamingEngine for NLL, or a zero-argument function returning one
    (called only when needed); default: the shipped checkpoint.
    ``fmd_extractor``: a name for :func:`streammuse.metrics.fmd.make_extractor` or an
    extractor object.
    """
    data = read_run(run)
    if not data.performances:
        data.problems.append("no finished song to score")
    nlls: dict[str, SongNll] = {}
    model_id = None
    if with_nll and data.performances:
        engine = _engine_for(data, engine)
        if engine is not None:
            model_id = getattr(engine, "model_id", None)
            nlls = {p.name: song_nll(engine, p) for p in data.performances}
            if model_id and data.manifest.get("model_id") and model_id != data.manifest["model_id"]:
                data.problems.append(f"run played by model {data.manifest['model_id']}, NLL scored by {model_id}")
    truth = load_truth(data) if data.performances else {}
    table, harm = per_song_table(data, nlls, truth)
    metrics = {k: math.nan for k in METRIC_KEYS}
    if harm:
        pooled = sum(harm.values(), Harmonicity(0, 0, 0))
        metrics.update(cr=pooled.cr, ur=pooled.ur, dr=pooled.dr)
    if nlls:
        metrics["nll_wavg"] = nll_wavg(nlls.values())
    system_songs = 0
    if data.ticks is not None and data.setting != "offline":
        scored = data.ticks[data.ticks["song"].isin([p.name for p in data.performances])]
        system_songs = int(scored["song"].nunique())
        metrics.update(isr=realtime.isr(scored), staleness=realtime.staleness(scored), isr_w=realtime.isr_w(scored))
        if system_songs < len(data.performances):
            data.problems.append(f"ticks.parquet covers {system_songs} of {len(data.performances)} songs")
    pairs = [(p, truth[p.name]) for p in data.performances if p.name in truth]
    extractor_name = None
    if pairs:
        played, true = [p for p, _ in pairs], [t for _, t in pairs]
        metrics["jsd_pitch"] = distributions.jsd_pitch(played, true)
        metrics["jsd_onset"] = distributions.jsd_onset(played, true)
        if with_fmd:
            from streammuse.metrics.fmd import frechet_music_distance, make_extractor

            extractor = make_extractor(fmd_extractor) if isinstance(fmd_extractor, str) else fmd_extractor
            extractor_name = extractor.name
            metrics["fmd"] = frechet_music_distance(played, true, extractor)
    summary = _summary(data, metrics, table, model_id, extractor_name,
                       {"music": len(data.performances), "truth": len(pairs), "nll": len(nlls),
                        "system": system_songs})
    if data.manifest.get("adaptive") and data.ticks is not None:
        summary["pair_share"] = adaptive.pair_share(data.ticks)
        summary["switches_per_song"] = adaptive.switches_per_song(data.path, system_songs)
    if write:
        write_metrics(data.path, table, summary)
    return summary


def _summary(data: RunData, metrics: dict, table: pd.DataFrame, model_id, extractor_name, coverage: dict) -> dict:
    """The ``summary.json`` of a scored run (NaN written as null)."""
    return {
        "run": data.path.name, "path": str(data.path.resolve()), "setting": data.setting,
        "interval": data.manifest.get("interval"), "gen_len": data.manifest.get("gen_len"),
        "bpm": data.manifest.get("bpm"), "model_id": data.manifest.get("model_id"),
        "nll_model_id": model_id, "testset": data.manifest.get("testset"),
        "n_songs_expected": len(data.expected_songs), "n_songs": len(data.performances),
        "songs": [p.name for p in data.performances],
        "coverage": coverage,
        "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()},
        "muspy": muspy_metrics.summarize(table.to_dict("records")),
        "fmd_extractor": extractor_name, "fmd_covariance": "ledoit-wolf" if extractor_name else None,
        "jsd_log_base": distributions.LOG_BASE, "staleness_c": realtime.STALENESS_C,
        "problems": data.problems,
        "profile": (data.manifest.get("profile") or {}).get("name"), "adaptive": data.manifest.get("adaptive"),
    }


def write_metrics(run: Path, table: pd.DataFrame, summary: dict) -> None:
    """Write ``metrics/per_song.parquet`` and ``metrics/summary.json`` as fresh files
    (each written beside, then moved over the old one)."""
    out = run / "metrics"
    try:
        out.mkdir(exist_ok=True)
        tmp = out / f".per_song.{os.getpid()}.parquet"
        table.to_parquet(tmp, index=False)
        tmp.replace(out / "per_song.parquet")
        tmp = out / f".summary.{os.getpid()}.json"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(out / "summary.json")
    except OSError as exc:
        raise StreamMuseError(f"{out}: cannot write metrics ({exc.strerror or exc})") from None


def read_summary(run: str | Path) -> dict | None:
    """``RUN/metrics/summary.json`` if present and readable, else None."""
    try:
        return json.loads((Path(run) / "metrics" / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
