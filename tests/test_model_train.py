"""Regularised training: dropout, decay groups, label smoothing, best-checkpoint early
stopping, resume, warm start, sharded checkpoints (micro sizes, synthetic corpus)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from streammuse.datasets import vocab
from streammuse.datasets.corpus import Corpus
from streammuse.datasets.frames import empty_frames
from streammuse.errors import StreamMuseError
from streammuse.model import train as train_mod
from streammuse.model.checkpoint import INDEX_FILE, WEIGHTS_FILE, read_weights
from streammuse.model.config import StreamMuseConfig, preset
from streammuse.model.engine import StreamingEngine, load_model
from streammuse.model.modeling import StreamMuseModel
from streammuse.model.train import TrainSettings, evaluate, param_groups, train, training_loss, validation_windows

SIZES = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, global_layers=2, encoder_layers=1,
             decoder_layers=1, max_frames=16)


def _frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random valid frames of 0..2 notes."""
    out = empty_frames(n)
    for i in range(n):
        k = int(rng.integers(0, 3))
        pitches = np.sort(rng.choice(np.arange(40, 90), size=k, replace=False))
        out[i, :k] = vocab.NOTE_OFFSET + (pitches - vocab.MIN_PITCH) * vocab.N_DURATIONS + 3
        out[i, k] = vocab.EOF
        out[i, k + 1 :] = vocab.PAD
    return out


@pytest.fixture(scope="module")
def corpus_npz(tmp_path_factory) -> str:
    """Songs 001-008 (train), 009 and 019 (valid), 010 (test)."""
    rng = np.random.default_rng(0)
    ids = [f"{i:03d}" for i in range(1, 9)] + ["009", "019", "010"]
    seqs = [_frames(rng, 2 * int(rng.integers(20, 40))) for _ in ids]
    path = tmp_path_factory.mktemp("corpus") / "corpus.npz"
    Corpus(ids, seqs, [0] * len(ids), []).save(path)
    return str(path)


def _settings(data: str, **kw) -> TrainSettings:
    base = dict(data=data, steps=6, batch_size=2, lr=3e-3, warmup=1, eval_every=2, checkpoint_every=2, model=SIZES)
    return TrainSettings(**{**base, **kw})


def _rows(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(np.stack([_frames(rng, 16) for _ in range(2)]).astype(np.int64))


@pytest.mark.parametrize("which", ["embedding_dropout", "attention_dropout", "residual_dropout"])
def test_dropout_is_active_in_train_mode_and_off_in_eval(which):
    torch.manual_seed(0)
    model = StreamMuseModel(StreamMuseConfig(**SIZES, **{which: 0.5}))
    plain = StreamMuseModel(StreamMuseConfig(**SIZES))
    plain.load_state_dict(model.state_dict())
    rows = _rows()
    model.train()
    a, b = model(rows)["logits"], model(rows)["logits"]
    assert not torch.allclose(a, b)
    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(model(rows)["logits"], model(rows)["logits"])
        assert torch.allclose(model(rows)["logits"], plain(rows)["logits"], atol=1e-6)


def test_dropout_settings_reach_the_llama_stacks_and_the_config_file(tmp_path):
    cfg = preset("tiny", attention_dropout=0.1, residual_dropout=0.2, embedding_dropout=0.3, hidden_size=64)
    model = StreamMuseModel(StreamMuseConfig(**{**cfg.to_dict(), **SIZES}))
    model.train()
    assert model.attention().dropout == 0.1  # every stack's attention in train mode
    for stack in (model.encoder, model.global_predictor, model.decoder):
        assert all(block.residual_dropout == 0.2 for block in stack.layers)
    model.eval()
    assert model.attention().dropout == 0.0
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["attention_dropout"], saved["residual_dropout"], saved["embedding_dropout"]) == (0.1, 0.2, 0.3)
    assert cfg.hidden_size == 64 and cfg.global_layers == 4
    with pytest.raises(StreamMuseError, match="unknown model setting"):
        preset("tiny", hiden_size=64)


def test_weight_decay_only_on_linear_weights():
    model = StreamMuseModel(StreamMuseConfig(**SIZES))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decayed == {n for n, m in model.named_modules() if isinstance(m, nn.Linear) for n in [f"{n}.weight"]}
    assert {"tok_emb.weight", "part_emb.weight", "target_part_emb.weight", "bos", "encoder.norm.weight",
            "global_predictor.layers.0.input_layernorm.weight"} <= kept
    assert {"lm_head.weight", "global_predictor.layers.1.self_attn.qkv_proj.weight",
            "decoder.layers.0.mlp.down_proj.weight"} <= decayed
    assert len(decayed) + len(kept) == len(list(model.parameters()))


def test_label_smoothing_mixes_the_uniform_target():
    torch.manual_seed(0)
    model = StreamMuseModel(StreamMuseConfig(**SIZES)).eval()
    rows = _rows()
    with torch.no_grad():
        plain = training_loss(model, rows, 0.0)
        smooth = training_loss(model, rows, 0.1)
        logp = torch.log_softmax(model(rows)["logits"].float(), -1)
    keep = rows != vocab.PAD
    nll = -logp.gather(-1, rows.unsqueeze(-1)).squeeze(-1)[keep].mean()
    uniform = -logp.mean(-1)[keep].mean()
    assert torch.allclose(plain, nll, atol=1e-5)
    assert torch.allclose(smooth, 0.9 * nll + 0.1 * uniform, atol=1e-5)


def test_validation_subset_is_fixed_and_spread():
    rng = np.random.default_rng(1)
    corpus = Corpus(["009", "019"], [_frames(rng, 64), _frames(rng, 64)], [0, 0], [])
    full = validation_windows(corpus, 16)
    sub = validation_windows(corpus, 16, limit=3)
    assert len(full) == 8 and len(sub) == 3
    assert np.array_equal(sub, full[[0, 4, 7]])


def test_run_folder_keeps_the_best_validation_model(tmp_path, corpus_npz):
    out = tmp_path / "run"
    log = train(_settings(corpus_npz, lr=0.3), out, show_progress=False)  # a large lr: validation NLL wanders
    nlls = [h["val_nll"] for h in log["history"]]
    best = int(np.argmin(nlls))
    assert [h["step"] for h in log["history"]] == [2, 4, 6]
    assert log["best"] == {"step": log["history"][best]["step"], "val_nll": nlls[best]}
    assert log["final_validation"]["val_nll"] == nlls[best]
    val = validation_windows(train_mod.load_split(corpus_npz, "valid"), 16)
    assert evaluate(load_model(out), val, 2, torch.device("cpu"))["val_nll"] == pytest.approx(nlls[best], abs=1e-5)
    assert log["n_train_songs"] == 8 and log["n_valid_songs"] == 2


def test_early_stopping_after_patience_validations(tmp_path, corpus_npz, monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.1, 2.2, 1.0])
    snapshots = {}

    def scored(model, windows, batch_size, device):  # scripted figures; the weights are recorded
        snapshots[len(snapshots)] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val_nll": next(scripted), "val_nll_accompaniment": 0.0, "val_tokens": 1}

    monkeypatch.setattr(train_mod, "evaluate", scored)
    log = train(_settings(corpus_npz, steps=12, patience=3), tmp_path, show_progress=False)
    assert [h["step"] for h in log["history"]] == [2, 4, 6, 8, 10]
    assert log["best"] == {"step": 4, "val_nll": 2.0}
    assert log["stopped"].startswith("early stop at step 10")
    assert log["final_validation"]["step"] == 4
    saved = read_weights(tmp_path)
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)


def test_resume_continues_exactly(tmp_path, corpus_npz, monkeypatch):
    settings = _settings(corpus_npz, residual_dropout=0.1, eval_every=3, checkpoint_every=3)
    straight = train(settings, tmp_path / "a", show_progress=False)
    calls = {"n": 0}
    batch = train_mod.WindowSampler.batch

    def interrupted(self, size):  # the process dies while drawing the 5th batch
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return batch(self, size)

    monkeypatch.setattr(train_mod.WindowSampler, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(settings, tmp_path / "b", show_progress=False)
    monkeypatch.setattr(train_mod.WindowSampler, "batch", batch)
    resumed = train(TrainSettings(), tmp_path / "b", resume=True, show_progress=False)
    assert [h["val_nll"] for h in resumed["history"]] == pytest.approx([h["val_nll"] for h in straight["history"]])
    a = torch.load(tmp_path / "a" / train_mod.STATE_FILE, weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / train_mod.STATE_FILE, weights_only=False)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(StreamMuseError, match="does not exist"):
        train(TrainSettings(), tmp_path / "c", resume=True)


def test_warm_start_scores_the_starting_point_first(tmp_path, corpus_npz):
    first = train(_settings(corpus_npz, steps=2), tmp_path / "a", show_progress=False)
    warm = train(_settings(corpus_npz, steps=2, lr=1e-9, init_from=str(tmp_path / "a")), tmp_path / "b",
                 show_progress=False)
    assert warm["history"][0]["step"] == 0
    assert warm["history"][0]["val_nll"] == pytest.approx(first["final_validation"]["val_nll"], abs=1e-5)


def test_sharded_and_bf16_checkpoints_load_as_fp32(tmp_path):
    torch.manual_seed(0)
    model = StreamMuseModel(StreamMuseConfig(**SIZES))
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    shards = sorted(p.name for p in (tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) >= 2 and (tmp_path / "sharded" / INDEX_FILE).is_file()
    assert not (tmp_path / "sharded" / WEIGHTS_FILE).exists()
    engine = StreamingEngine.load(tmp_path / "sharded")
    loaded = engine.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert engine.model_id.startswith("sharded-")
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    half = load_model(tmp_path / "bf16")
    assert all(v.dtype == torch.float32 for v in half.state_dict().values())
    (tmp_path / "sharded" / shards[0]).unlink()
    with pytest.raises(StreamMuseError, match=f"shard {shards[0]}"):
        StreamingEngine.load(tmp_path / "sharded")


def test_training_can_write_a_sharded_checkpoint(tmp_path, corpus_npz):
    log = train(_settings(corpus_npz, steps=2, max_shard_size="100KB"), tmp_path, show_progress=False)
    assert (tmp_path / INDEX_FILE).is_file() and len(list(tmp_path.glob("model-*.safetensors"))) >= 2
    val = validation_windows(train_mod.load_split(corpus_npz, "valid"), 16)
    engine = StreamingEngine.load(tmp_path)
    assert evaluate(engine.model, val, 2, torch.device("cpu"))["val_nll"] == pytest.approx(log["best"]["val_nll"], abs=1e-5)


def test_train_command_user_errors(tmp_path):
    from typer.testing import CliRunner

    from streammuse.cli.main import app

    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert result.exit_code == 2 and "error: --resume" in result.output
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path), "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not a POP909 folder" in result.output


def test_a_search_run_can_skip_the_whole_split_score(tmp_path, corpus_npz):
    log = train(_settings(corpus_npz, steps=2, val_windows=1), tmp_path, show_progress=False, final_validation=False)
    assert "final_validation" not in log and log["best"]["step"] == 2
    full = validation_windows(train_mod.load_split(corpus_npz, "valid"), 16)
    assert log["history"][-1]["val_tokens"] < int((full != vocab.PAD).sum())
