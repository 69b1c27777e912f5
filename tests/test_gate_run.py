"""The gate can fail: a client that drops every response regresses against a baseline made
by the healthy setup (same seeds, same songs); the same setup twice passes."""

from streammuse.client.session import SongClient
from streammuse.gate.compare import Verdict, compare, failed
from streammuse.gate.run import GateConfig, run_gate
from streammuse.model.engine import StreamingEngine

# One song, one bar, one sim configuration: the smallest gate that still exercises
# replay, scoring and comparison (the real gate runs more, see GateConfig's defaults).
SMALL = GateConfig(songs=1, max_bars=1, configurations=(("remote", 2, 4, "core"),))


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


def _shuffle_weights(engine: StreamingEngine, seed: int = 0) -> None:
    """Permute every parameter tensor's entries: same shapes and value distribution, no
    learned structure left (what a broken checkpoint conversion looks like)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in engine.model.parameters():
            flat = p.view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=gen)])


def test_gate_fails_for_a_damaged_model(tmp_path):
    # The shipped checkpoint sets the baseline; the same checkpoint with shuffled weights
    # must regress on the music metrics (NLL at the very least) of every configuration.
    cfg = GateConfig(songs=2, max_bars=2, configurations=(("offline", 1, 1, "core"), ("remote", 2, 4, "http")))
    engine = StreamingEngine.load()
    healthy = run_gate(cfg, engine, tmp_path / "healthy")
    _shuffle_weights(engine)
    damaged = run_gate(cfg, engine, tmp_path / "damaged")
    rows = {r.metric: r for r in compare(healthy, damaged)}
    assert rows["offline/nll_wavg"].verdict is Verdict.REGRESSED
    assert rows["remote-I2-GL4/nll_wavg"].verdict is Verdict.REGRESSED
    assert damaged["offline/nll_wavg"] > 1.5 * healthy["offline/nll_wavg"]
    assert failed(list(rows.values()))
