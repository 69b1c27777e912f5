"""The RTT model of section IV-C: Pareto sampler statistics and profile files."""

import json

import numpy as np
import pytest

from streammuse.client.latency import SHIPPED_PROFILES, LatencyInjector, load_profile
from streammuse.rtt import NetworkModel, ServerModel, pareto
from streammuse.errors import StreamMuseError


def test_pareto_min_mean_and_tail():
    rng = np.random.default_rng(0)
    x_min, alpha = 10.0, 3.0
    xi = pareto(rng, x_min, alpha, 200_000)
    assert xi.min() >= x_min
    assert xi.min() < x_min * 1.001
    # E[xi] = x_min alpha / (alpha - 1) = 15
    assert abs(xi.mean() - 15.0) < 0.15
    # P(xi > x) = (x_min / x)^alpha: P(xi > 20) = 1/8
    assert abs((xi > 20.0).mean() - 0.125) < 0.005
    assert abs((xi > 40.0).mean() - 1 / 64) < 0.002


def test_network_latency_shift():
    net = NetworkModel(nu_ms=100.0, x_min_ms=10.0, alpha=3.0)
    nl = net.sample_ms(np.random.default_rng(1), 100_000)
    assert nl.min() >= 100.0
    assert abs(nl.mean() - net.mean_ms) < 0.2  # nu + x_min/(alpha-1) = 105
    assert net.mean_ms == 105.0


def test_server_model_quadratic():
    sm = ServerModel(a=0.5, b=2.0, c=3.0, sigma_ms=0.0)
    assert sm.mean_ms(4) == 0.5 * 16 + 8 + 3
    assert sm.sample_ms(np.random.default_rng(0), 4) == 19.0
    # A batch of B sessions: each extra one adds batch_slope of a lone request's time.
    batched = ServerModel(a=0.5, b=2.0, c=3.0, batch_slope=0.25)
    assert batched.mean_ms(4, batch_size=1) == 19.0 and batched.mean_ms(4, batch_size=5) == 38.0


def test_injector_is_seeded_and_splits_nl():
    prof = load_profile("remote")
    inj1, inj2 = LatencyInjector(prof, 7), LatencyInjector(prof, 7)
    d1 = [inj1.draw() for _ in range(3)]
    assert d1 == [inj2.draw() for _ in range(3)]
    assert d1[0] != d1[1]
    assert d1[0].request_ms + d1[0].response_ms == pytest.approx(d1[0].network_ms)
    assert d1[0].network_ms >= prof.network.nu_ms
    assert load_profile("local").network is None
    assert LatencyInjector(load_profile("local"), 0).draw().network_ms == 0.0


def test_shipped_profiles_match_paper_description():
    ls, rem = load_profile("local-server"), load_profile("remote")
    assert 90 <= ls.network.nu_ms <= 110 and 140 <= rem.network.nu_ms <= 160
    assert ls.network.alpha < rem.network.alpha  # local-server is the unstable one
    for name in SHIPPED_PROFILES:
        assert load_profile(name).name == name
    # Every shipped profile says where its numbers come from: the paper's GPU settings
    # cite their passage, the Local one was measured on the dev machine.
    assert ls.source["kind"] == rem.source["kind"] == "paper" and "V-B" in rem.source["detail"]
    local = load_profile("local")
    assert local.source["kind"] == "measured" and local.source["detail"].startswith("streammuse profile")
    assert local.server_model.batch_slope > 0


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"name": "x", "source": {"kind": "paper", "detail": "V-B"}, "network": {"nu_ms": 1, "x_min_ms": 1, "alpha": 0.5}}',
         "network.alpha: Input should be greater than 1"),
        ('{"name": "x", "source": {"kind": "paper", "detail": "V-B"}, "network": {"nu_ms": 1}}', "network.x_min_ms: Field required"),
        ('{"name": "x", "source": {"kind": "paper", "detail": "V-B"}, "speed": 3}', "speed: Extra inputs"),
        ('{"name": "x", "source": {"kind": "guess", "detail": "?"}}', "source.kind"),
        ('[1, 2]', "valid dictionary"),
    ],
)
def test_bad_profile_files(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(StreamMuseError, match=message):
        load_profile(path)


def test_missing_profile_file(tmp_path):
    with pytest.raises(StreamMuseError, match="cannot read profile"):
        load_profile(tmp_path / "nope.json")


def test_user_profile_round_trip(tmp_path):
    prof = load_profile("remote")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(prof.to_dict()))
    assert load_profile(path) == prof
