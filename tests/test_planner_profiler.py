"""The profiler: GL ranges, the request loop's bookkeeping, and profile building."""

import numpy as np
import pandas as pd
import pytest

from streammuse.client.latency import LatencyInjector, load_profile, profile_from_dict
from streammuse.datasets.frames import empty_frames
from streammuse.errors import StreamMuseError
from streammuse.planner.profiler import WARMUP_REQUESTS, ProfileSettings, build_profile, measure_rtt, parse_gen_lens
from streammuse.contract import CreateSessionResponse, InferResponse


@pytest.mark.parametrize(("text", "expected"), [("1-4", (1, 2, 3, 4)), ("1,3,2-3", (1, 2, 3)), ("8", (8,))])
def test_parse_gen_lens(text, expected):
    assert parse_gen_lens(text) == expected


@pytest.mark.parametrize(("text", "message"), [("", "names no GL"), ("5-3", "names no GL"), ("0-2", ">= 1"), ("x", "not a number")])
def test_parse_gen_lens_rejects(text, message):
    with pytest.raises(StreamMuseError, match=message):
        parse_gen_lens(text)


class CountingServer:
    """A server whose answer carries a fixed inference time of 2 GL ms; it records what
    it was asked so the loop's bookkeeping can be checked."""

    def __init__(self):
        self.calls = []
        self.closed = []

    def create_session(self, request):
        return CreateSessionResponse(session_id=f"s{len(self.calls)}-{request.seed}")

    def infer(self, session_id, request):
        self.calls.append((session_id, request.request_tick, request.gen_len, len(request.melody)))
        return InferResponse(status="ok", request_tick=request.request_tick, inference_ms=2.0 * request.gen_len, queue_ms=0.5)

    def close_session(self, session_id):
        self.closed.append(session_id)


def test_measure_rtt_round_robin_with_injected_network():
    server = CountingServer()
    remote = load_profile("remote")
    settings = ProfileSettings(gen_lens=(1, 4), samples=3, seed=7)
    table = measure_rtt(server, settings, empty_frames(2), LatencyInjector(remote, seed=7))
    # Warm-up requests are sent but not recorded; GLs alternate within each round.
    assert [c[2] for c in server.calls] == [1, 4] * (WARMUP_REQUESTS + 3)
    assert [c[1] for c in server.calls[::2]] == [0, 1, 2, 3, 4]
    assert [c[3] for c in server.calls[::2]] == [0, 1, 1, 1, 1]  # one new melody frame each
    assert len(server.closed) == 2
    assert table["gen_len"].tolist() == [1, 4, 1, 4, 1, 4]
    # The same seed draws the same delays in the same order.
    replay = LatencyInjector(remote, seed=7)
    draws = [replay.draw() for _ in range(2 * (WARMUP_REQUESTS + 3))][2 * WARMUP_REQUESTS :]
    assert table["network_ms"].tolist() == pytest.approx([d.network_ms for d in draws])
    assert np.all(table["rtt_ms"] >= table["network_ms"])
    # inference = the server's 2 GL ms plus the injected jitter (remote: sigma 1 ms).
    expected = [2.0 * gl + d.server_jitter_ms for d, gl in zip(draws, [1, 4] * 3)]
    assert table["inference_ms"].tolist() == pytest.approx(expected)
    assert table["queue_ms"].tolist() == [0.5] * 6


def test_build_profile_is_loadable_and_recovers_models():
    rng = np.random.default_rng(5)
    gl = np.repeat(np.arange(1, 13), 3000)
    nu, x_min, alpha = 100.0, 10.0, 2.5
    network = nu + x_min * rng.pareto(alpha, len(gl))
    server = 0.2 * gl**2 + 3.0 * gl + 5.0 + rng.normal(0, 1.0, len(gl))
    samples = pd.DataFrame({"gen_len": gl, "rtt_ms": server + network, "inference_ms": server, "queue_ms": 0.0, "network_ms": network})
    profile, warnings = build_profile(samples, name="x-measured", description="test")
    assert warnings == []
    loaded = profile_from_dict(profile)  # the client's validator accepts it
    assert loaded.server_model.a == pytest.approx(0.2, abs=0.02)
    assert loaded.server_model.b == pytest.approx(3.0, abs=0.3)
    assert loaded.server_model.sigma_ms == pytest.approx(1.0, abs=0.05)
    assert loaded.network.nu_ms == pytest.approx(nu, abs=0.05)
    assert loaded.network.alpha == pytest.approx(alpha, rel=0.1)
    assert profile["rtt_fit"]["p95"]["c"] > profile["rtt_fit"]["mean"]["c"]


def test_build_profile_without_network():
    gl = np.repeat(np.arange(1, 5), 25)
    samples = pd.DataFrame({"gen_len": gl, "rtt_ms": 3.0 * gl, "inference_ms": 3.0 * gl, "queue_ms": 0.0, "network_ms": 0.0})
    profile, _ = build_profile(samples, name="local-measured", description="")
    assert profile["network"] is None
    assert profile["rtt_fit"]["mean"]["b"] == pytest.approx(3.0)


def test_measure_rtt_against_the_real_engine_in_process():
    from streammuse.client.transports import InProcessTransport
    from streammuse.core.sessions import SessionCore
    from streammuse.model.engine import StreamingEngine

    transport = InProcessTransport(SessionCore(StreamingEngine.random("tiny", seed=0)))
    table = measure_rtt(transport, ProfileSettings(gen_lens=(1, 2), samples=1), empty_frames(4))
    assert table["gen_len"].tolist() == [1, 2]
    assert (table["network_ms"] == 0).all()
    # Nothing is injected: the RTT is the call itself, which contains the engine's time.
    assert (table["inference_ms"] > 0).all()
    assert (table["rtt_ms"] >= table["inference_ms"]).all()
    assert transport.core.sessions == {}
