"""Measure a deployment's RTT per GL (paper V-B, Fig. 3) and turn it into a latency profile.

One session per GL; requests go round-robin over the GLs (one request per GL per round)
so that load from anything else on the machine spreads evenly over every GL instead of
biasing whichever GL happened to run during a busy spell. Each session advances one tick
per request (I = 1), sending the one new melody frame, as a client would.

Per request: RTT = client-measured time of the transport call + the injected network
delay NL (and the injected server jitter), with parts inference_ms and queue_ms (what the
server reports) and network_ms (what was injected). The injected delays are independent
of the server, so by default they are added rather than slept (sleeping only costs wall
time); ``sleep=True`` really waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streammuse.errors import StreamMuseError
from streammuse.planner.rtt_model import fit_inference, fit_pareto, fit_rtt
from streammuse.rtt import NetworkModel

# The first requests of a session pay for prefill and allocation, which a running client
# pays once per song, not per request.
WARMUP_REQUESTS = 2
# A Pareto tail index <= 1 has an infinite mean; the client's profile loader needs > 1.
MIN_PROFILE_ALPHA = 1.01


@dataclass(frozen=True)
class ProfileSettings:
    """What one `streammuse profile` run measures."""

    gen_lens: tuple[int, ...]
    samples: int  # per GL, after warm-up
    bpm: float = 120.0
    seed: int = 0
    sleep: bool = False


def parse_gen_lens(text: str) -> tuple[int, ...]:
    """'1-16' or '1,2,4,8' (or a mix) -> sorted distinct GLs; empty or < 1 is a user error."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                values.update(range(lo, hi + 1))
            elif part:
                values.add(int(part))
        except ValueError:
            raise StreamMuseError(f"--gen-lens: {part!r} is not a number or a range like 1-16") from None
    if not values:
        raise StreamMuseError(f"--gen-lens: {text!r} names no GL (the range is empty)")
    if min(values) < 1:
        raise StreamMuseError(f"--gen-lens: GL must be >= 1, got {min(values)}")
    return tuple(sorted(values))


def measure_rtt(
    transport,
    settings: ProfileSettings,
    melody_frames: np.ndarray,
    injector=None,
    on_request: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Send ``samples`` requests per GL through ``transport`` and time each one.

    ``transport``: anything with the Transport protocol (``create_session``, ``infer``,
    ``close_session``) - HTTP (TCP or Unix socket), embedded or in-process. ``melody_frames``: (T, FRAME_LEN)
    true melody frames fed one per request (cycled if the song is shorter than the run).
    ``injector``: a ``streammuse.client.latency.LatencyInjector`` or None (no injected delay).
    Returns one row per request: gen_len, rtt_ms, inference_ms, queue_ms, network_ms.
    """
    from streammuse.contract import CreateSessionRequest, InferRequest, frames_to_wire

    if settings.samples < 1:
        raise StreamMuseError(f"--samples must be >= 1, got {settings.samples}")
    sessions = {
        gl: transport.create_session(CreateSessionRequest(bpm=settings.bpm, seed=settings.seed + gl)).session_id
        for gl in settings.gen_lens
    }
    rows = []
    try:
        for step in range(WARMUP_REQUESTS + settings.samples):
            melody = [] if step == 0 else frames_to_wire(melody_frames[(step - 1) % len(melody_frames)][None])
            for gl, session_id in sessions.items():
                draw = injector.draw() if injector is not None else None
                network_ms = draw.network_ms if draw else 0.0
                jitter_ms = draw.server_jitter_ms if draw else 0.0
                if settings.sleep and draw:
                    time.sleep((draw.request_ms + jitter_ms) / 1000.0)
                start = time.perf_counter()
                response = transport.infer(session_id, InferRequest(request_tick=step, gen_len=gl, melody=melody))
                call_ms = (time.perf_counter() - start) * 1000.0
                if settings.sleep and draw:
                    time.sleep(draw.response_ms / 1000.0)
                if on_request is not None:
                    on_request()
                if step < WARMUP_REQUESTS:
                    continue
                rows.append(
                    {
                        "gen_len": gl,
                        "rtt_ms": call_ms + jitter_ms + network_ms,
                        "inference_ms": response.inference_ms + jitter_ms,
                        "queue_ms": response.queue_ms,
                        "network_ms": network_ms,
                    }
                )
    finally:
        for session_id in sessions.values():
            transport.close_session(session_id)
    return pd.DataFrame(rows, columns=["gen_len", "rtt_ms", "inference_ms", "queue_ms", "network_ms"])


def build_profile(samples: pd.DataFrame, name: str, description: str, source: dict | None = None) -> tuple[dict, list[str]]:
    """A latency profile (docs/design.md section 4) from measured samples, and warnings.

    * ``rtt_fit``: f and f95 fitted to the mean and p95 RTT per GL (used by ``plan``);
    * ``server_model``: IL(GL) fitted to RTT - NL (everything but the network, so the sim
      clock reproduces the measured RTT), sigma the residual spread;
    * ``network``: the Pareto fit of the injected NL, or null when there was none.
    """
    warnings: list[str] = []
    fit = fit_rtt(samples["gen_len"].to_numpy(), samples["rtt_ms"].to_numpy())
    server, sigma = fit_inference(samples["gen_len"].to_numpy(), (samples["rtt_ms"] - samples["network_ms"]).to_numpy())
    network = None
    if samples["network_ms"].max() > 0:
        net = fit_pareto(samples["network_ms"].to_numpy())
        if net.alpha < MIN_PROFILE_ALPHA:
            warnings.append(f"network tail index alpha = {net.alpha:.3f} <= 1 (infinite mean); written as {MIN_PROFILE_ALPHA}")
            net = NetworkModel(net.nu_ms, net.x_min_ms, MIN_PROFILE_ALPHA)
        network = net.to_dict()
    profile = {
        "name": name,
        "description": description,
        "source": source or {"kind": "measured", "detail": "streammuse profile"},
        "network": network,
        "server_jitter_ms": 0.0,  # measured jitter is already in server_model.sigma_ms
        "server_model": {**server.to_dict(), "sigma_ms": sigma},
        "rtt_fit": fit.to_dict(),
    }
    return profile, warnings


def summary_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per GL: sample count, mean and p95 RTT, and the mean of each part (ms)."""
    grouped = samples.groupby("gen_len")
    return pd.DataFrame(
        {
            "n": grouped.size(),
            "rtt_mean": grouped["rtt_ms"].mean(),
            "rtt_p95": grouped["rtt_ms"].quantile(0.95),
            "inference_mean": grouped["inference_ms"].mean(),
            "queue_mean": grouped["queue_ms"].mean(),
            "network_mean": grouped["network_ms"].mean(),
        }
    )



def measure_batch_slope(engine, melody_frames: np.ndarray, gen_len: int = 4,
                        batch_sizes: tuple[int, ...] = (1, 2, 4, 8), rounds: int = 12) -> tuple[float, pd.DataFrame]:
    """How a batch's server time grows with its size: beta in f(GL) (1 + beta (B - 1)).

    For each B, B sessions of the session core advance one tick per round together and
    each round's engine compute time is recorded (after ``WARMUP_REQUESTS`` rounds).
    beta is the least-squares slope through the origin of t(B) / t(1) - 1 against B - 1.
    Returns (beta, one row per round: batch_size, compute_ms).
    """
    from streammuse.contract import CreateSessionRequest, InferRequest, frames_to_wire
    from streammuse.core.sessions import SessionCore

    rows = []
    for size in batch_sizes:
        core = SessionCore(engine)
        ids = [core.create(CreateSessionRequest(seed=k)).session_id for k in range(size)]
        for step in range(WARMUP_REQUESTS + rounds):
            melody = [] if step == 0 else frames_to_wire(melody_frames[(step - 1) % len(melody_frames)][None])
            for sid in ids:
                core.submit(sid, InferRequest(request_tick=step, gen_len=gen_len, melody=melody), 0.0)
            batch = core.take_batch(0.0)
            core.compute(batch)
            core.finish(batch, 0.0)
            if step >= WARMUP_REQUESTS:
                rows.append({"batch_size": size, "compute_ms": batch.compute_ms})
    table = pd.DataFrame(rows, columns=["batch_size", "compute_ms"])
    means = table.groupby("batch_size")["compute_ms"].mean()
    if 1 not in means.index or len(means) < 2:
        return 0.0, table
    x = means.index.to_numpy(dtype=float) - 1.0
    y = means.to_numpy() / means.loc[1] - 1.0
    return max(0.0, float(np.dot(x, y) / np.dot(x, x))), table
