"""The server side of an experiment: a virtual replica for the sim clock, or a real
server (started here or reached by URL) for the wall clock."""

from __future__ import annotations

import contextlib
import os
import platform

import numpy as np

from streammuse.client.latency import LatencyProfile
from streammuse.errors import StreamMuseError
from streammuse.experiment.config import ReplayConfig


def batch_timer(cfg: ReplayConfig, profile: LatencyProfile):
    """How long a virtual batch takes, in ms: its measured engine compute time
    (``measured``), or a draw from the profile's server model for the batch's size and
    longest GL (``modelled``, seeded by the run's seed, drawn in event order)."""
    if cfg.server_time == "measured":
        return lambda batch: batch.compute_ms
    model = profile.server_model
    if model is None:
        raise StreamMuseError(f"profile {profile.name!r} has no server_model; use --server-time measured "
                              "or a profile measured by `streammuse profile`")
    def modelled(batch) -> float:
        # Seeded by the batch's own content, not by a replica-wide stream: a song replays
        # identically in one-song-at-a-time runs whatever ran before it (and on --resume).
        # Not by session id: its random half would make the draw, and the run, differ each time.
        first = min(batch.jobs, key=lambda j: (j.session.settings.seed, j.request.request_tick))
        rng = np.random.default_rng((cfg.seed, first.session.settings.seed,
                                     first.request.request_tick, len(batch.jobs)))
        return model.sample_ms(rng, max(j.request.gen_len for j in batch.jobs), len(batch.jobs))

    return modelled


def server_time_label(cfg: ReplayConfig, profile: LatencyProfile) -> str:
    """What the run's server time was (one line for the manifest and the report)."""
    if cfg.setting == "offline":
        return "none (offline)"
    if cfg.clock == "wall":
        return f"real: {cfg.server or 'embedded server'} on {platform.node()}"
    if cfg.server_time == "measured":
        return f"measured: engine compute per batch on {platform.node()} ({os.cpu_count()} CPUs)"
    src = profile.source or {"kind": "source not stated", "detail": "user profile"}
    where = src.get("detail", "?")
    if src.get("kind") == "measured":
        where = f"{src.get('machine', '?')}, {src.get('date', '?')}"
    return f"modelled: profile {profile.name} ({src.get('kind', '?')}: {where})"


def batches_engine_across_songs(cfg: ReplayConfig) -> bool:
    """Whether a sim run computes the batches of many songs' replicas in one engine call
    (``core.drivers.DeferredCompute``): only with one replica per song, where each song's
    batches are its own, and a modelled server time, which does not depend on the compute.
    With ``measured`` a batch lasts its own compute time, the song alone on its server:
    batching it with other songs' would change that time, so each replica calls the engine
    alone."""
    return cfg.clock == "sim" and cfg.servers == "per-song" and cfg.server_time == "modelled"


def engine_calls_label(batched: bool) -> str:
    """What a sim run's engine calls were (for the manifest)."""
    if batched:
        return ("batched across songs: each replica's batch is computed when the first pending batch of any "
                "song ends, all pending batches in one engine call (events as unbatched; tokens as far as the "
                "engine's batches are)")
    return "one engine call per replica batch"


def virtual_replica(cfg: ReplayConfig, engine, profile: LatencyProfile, deferred=None):
    """``(driver, front)``: the session core on a virtual clock, reached directly
    (``front="core"``) or through the FastAPI app in process (``front="http"``);
    ``deferred`` (a ``DeferredCompute``) when its engine work is batched with other
    replicas'."""
    from streammuse.client.transports import AsgiFront, CoreFront
    from streammuse.core.drivers import VirtualDriver
    from streammuse.core.sessions import SessionCore

    driver = VirtualDriver(SessionCore(engine), batch_timer(cfg, profile), deferred)
    if cfg.front == "http":
        from streammuse.serving.app import create_app

        return driver, AsgiFront(create_app(driver))
    return driver, CoreFront(driver)


@contextlib.contextmanager
def open_transport(cfg: ReplayConfig, model=None, random_weights: bool = False):
    """The transport for a wall-clock run: ``--server URL`` (http:// or unix://), else an
    embedded server started here (the Local socket server for ``local``, a local Ray
    Serve app otherwise) and stopped on exit."""
    from streammuse.client.transports import connect
    from streammuse.serving.embedded import start_server

    server = None
    if not cfg.server:
        kind = "local" if cfg.setting == "local" else "ray"
        server = start_server(kind, checkpoint=str(model) if model else None, random_weights=random_weights)
    transport = connect(cfg.server or server.url)
    try:
        yield transport
    finally:
        transport.close()
        if server is not None:
            server.stop()


def check_server(transport, cfg: ReplayConfig) -> str:
    """Open and close one session, so an unreachable server is one clear line before any
    run folder is made; returns the server's model id (for the run manifest)."""
    from streammuse.client.transports import ServerUnavailable

    try:
        created = transport.create_session(cfg.session_request(0))
        transport.close_session(created.session_id)
        return created.model_id
    except (ServerUnavailable, OSError) as exc:
        raise StreamMuseError(f"server unreachable ({cfg.server or 'the embedded server'}): {exc}") from None
