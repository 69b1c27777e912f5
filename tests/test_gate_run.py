"""The gate can fail: a client that drops every response regresses against a baseline made
by the healthy setup (same seeds, same songs); the same setup twice passes."""

from streammuse.client.session import SongClient
from streammuse.gate.compare import Verdict, compare, failed
from streammuse.gate.run import GateConfig, run_gate
from streammuse.model.engine import StreamingEngine

# One song, one bar, one sim configuration: the smallest gate that still exercises
# replay, scoring and comparison (the real gate runs more, see GateConfig's defaults).
SMALL = GateConfig(songs=1, max_bars=1, configurations=(("remote", 2, 4),))


class DroppingClient(SongClient):
    """A client whose network loses every response: each request ends as failed."""

    def on_reply(self, rec, response, recv_ms, network_ms):
        self.on_error(rec, recv_ms, unknown_session=False)
        return 0


def test_gate_fails_when_every_response_is_dropped(tmp_path):
    engine = StreamingEngine.random("tiny", seed=0)
    baseline = run_gate(SMALL, engine, tmp_path / "healthy")
    assert baseline["remote-I2-GL4/isr"] > 0.5
    dropped = run_gate(SMALL, engine, tmp_path / "dropped", client_factory=DroppingClient)
    assert dropped["remote-I2-GL4/isr"] == 0.0
    rows = {r.metric: r.verdict for r in compare(baseline, dropped)}
    assert rows["remote-I2-GL4/isr"] is Verdict.REGRESSED
    assert rows["remote-I2-GL4/isr_w"] is Verdict.REGRESSED
    assert failed(compare(baseline, dropped))


def test_gate_is_deterministic(tmp_path):
    engine = StreamingEngine.random("tiny", seed=0)
    first = run_gate(SMALL, engine, tmp_path / "a")
    assert not failed(compare(first, run_gate(SMALL, engine, tmp_path / "b")))



def test_gate_cli_without_baseline_is_a_user_error(tmp_path):
    from typer.testing import CliRunner

    from streammuse.cli.main import app

    result = CliRunner().invoke(app, ["gate", "--baseline", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "create one with `streammuse gate --update-baseline`" in result.stderr
