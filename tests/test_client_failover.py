"""Issue 13: a failed replica (a 5xx while the server still answers) moves the session
to a new one with its context at once, instead of backing off as from a dead server."""

from pathlib import Path

import httpx
import pandas as pd
import pytest

from streammuse.client.transports import HttpTransport, InProcessTransport, ServerUnavailable
from streammuse.contract import InferRequest
from streammuse.core.sessions import SessionCore
from streammuse.experiment import replay as rp
from streammuse.experiment.config import ReplayConfig
from streammuse.model.silent import SilentEngine

TESTSET = Path(__file__).resolve().parents[1] / "testset"


def test_a_proxy_error_page_that_is_not_json_is_a_server_error_with_its_status():
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="Internal Server Error: the replica died")

    transport = HttpTransport("http://proxy")
    transport.client = httpx.Client(base_url="http://proxy", transport=httpx.MockTransport(proxy))
    with pytest.raises(ServerUnavailable) as err:
        transport.infer("s", InferRequest(request_tick=0, gen_len=1))
    assert err.value.status == 500


class ReplicaDiesOnce(InProcessTransport):
    """The first session's requests from tick 16 on fail with 500 (its replica died)."""

    def __init__(self, core) -> None:
        super().__init__(core)
        self.first: str | None = None
        self.opened = 0

    def create_session(self, request, timeout_s=None):
        created = super().create_session(request)
        self.opened += 1
        self.first = self.first or created.session_id
        return created

    def infer(self, session_id, request, timeout_s=None):
        if session_id == self.first and request.request_tick >= 16:
            raise ServerUnavailable("server error 500", 500)
        return super().infer(session_id, request, timeout_s)


def test_wall_client_moves_a_session_off_a_failed_replica_without_backing_off(tmp_path):
    cfg = ReplayConfig(testset=TESTSET, setting="local", clock="wall", interval=2, gen_len=4, songs=1, max_bars=3,
                       out=tmp_path, concurrency=1)
    transport = ReplicaDiesOnce(SessionCore(SilentEngine()))
    path, _ = rp.run_pair(cfg, rp.load_songs(cfg), rp.resolve_profile(cfg), transport=transport, model_id="x")
    reqs = pd.read_parquet(path / "requests.parquet")
    ticks = pd.read_parquet(path / "ticks.parquet")
    assert transport.opened == 2  # the song's session, then one new one (not one per failed request)
    failed = reqs[reqs.status == "failed"]
    assert len(failed) == 1 and failed.request_tick.iloc[0] == 16
    # no backoff: the next request (with the context) went out at its usual tick, and the
    # failure cost no tick (request 14's frames cover 16 and 17)
    assert list(reqs.request_tick) == list(range(0, 48, 2))
    assert ticks[ticks.tick >= 14].available.all()
