"""The accompaniment model: causality, rollback == recompute, round trip, training, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames, interleave
from streammuse.errors import StreamMuseError
from streammuse.model.config import StreamMuseConfig
from streammuse.model.engine import EngineRequest, StreamingEngine, check_frames, generate_offline, generate_offline_batch
from streammuse.model.modeling import StreamMuseModel
from streammuse.model.sampling import Sampling

MICRO = StreamMuseConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, global_layers=2,
                         encoder_layers=1, decoder_layers=1, max_frames=16)


def _frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random valid frames of 0..2 notes."""
    out = empty_frames(n)
    for i in range(n):
        k = int(rng.integers(0, 3))
        pitches = np.sort(rng.choice(np.arange(40, 90), size=k, replace=False))
        toks = vocab.NOTE_OFFSET + (pitches - vocab.MIN_PITCH) * vocab.N_DURATIONS + 3
        out[i, :k] = toks
        out[i, k] = vocab.EOF
        out[i, k + 1 :] = vocab.PAD
    return out


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.random(MICRO, seed=0)


def test_changing_melody_at_t_does_not_change_accompaniment_at_t(engine):
    rng = np.random.default_rng(0)
    m, a = _frames(rng, 6), _frames(rng, 6)
    rows = torch.as_tensor(interleave(m, a).astype(np.int64)).unsqueeze(0)
    m2 = m.copy()
    m2[3] = _frames(np.random.default_rng(9), 1)[0]
    assert not np.array_equal(m2[3], m[3])
    rows2 = torch.as_tensor(interleave(m2, a).astype(np.int64)).unsqueeze(0)
    with torch.inference_mode():
        l1 = engine.model(rows)["logits"][0]
        l2 = engine.model(rows2)["logits"][0]
    # Rows 0..7 are A[0..3], M[0..3]: A[3] (row 6) must not see M[3] (row 7).
    assert torch.equal(l1[:7], l2[:7])
    assert not torch.allclose(l1[8], l2[8])  # A[4] does see it


def test_incremental_generation_with_rollback_equals_recompute(engine):
    rng = np.random.default_rng(1)
    m = _frames(rng, 12)
    state = engine.new_session(Sampling(seed=3))
    engine.infer(state, 4, m[:4], 3)
    engine.infer(state, 6, m[4:6], 3)  # M[4] guessed before, now replaced: rollback
    engine.infer(state, 7, m[6:7], 2)  # rows 0..15 cached, 16 = W: crop to row 13, no slide
    assert state.win_start == 0
    assert len(state.cache_rows) == 2 * 7 + 2 * 2 - 2
    rows = torch.as_tensor(state.cache_rows[: 2 * 7].astype(np.int64))
    np.testing.assert_array_equal(state.cache_rows[1:14:2], m[:7])  # the truth replaced every guess
    with torch.inference_mode():
        parts = torch.arange(len(rows)) % 2
        vecs = engine.model.encode_frames(rows, parts)
        full = engine.model.global_step(torch.cat([engine.model.bos_embeds(1)[0], vecs]).unsqueeze(0))
    torch.testing.assert_close(state.hidden[: 1 + len(rows)], full[0], rtol=1e-5, atol=1e-5)


def test_sliding_window_keeps_the_cache_bounded(engine):
    rng = np.random.default_rng(2)
    m = _frames(rng, 40)
    state = engine.new_session()
    for s in range(1, 40, 3):
        out = engine.infer(state, s, m[max(0, s - 3) : s], 4)
        assert out.shape == (4, vocab.FRAME_LEN)
        check_frames(out, "generated")
        assert len(state.cache_rows) <= MICRO.max_frames
        assert state.cached_positions == 1 + len(state.cache_rows)


def test_same_seed_same_output_and_gap_filled(engine):
    m = _frames(np.random.default_rng(3), 8)
    outs = []
    for _ in range(2):
        st = engine.new_session(Sampling(seed=7, top_k=20))
        outs.append(engine.infer(st, 8, m[5:8], 2, melody_start=5))
        np.testing.assert_array_equal(st.melody[:5], empty_frames(5))  # ticks never sent: silence
    np.testing.assert_array_equal(outs[0], outs[1])


def test_save_load_round_trip(tmp_path, engine):
    engine.model.save_pretrained(tmp_path)
    loaded = StreamingEngine.load(tmp_path)
    rows = torch.as_tensor(interleave(*(_frames(np.random.default_rng(4), 5),) * 2).astype(np.int64)).unsqueeze(0)
    with torch.inference_mode():
        assert torch.equal(engine.model(rows)["logits"], loaded.model(rows)["logits"])


def test_training_lowers_the_loss_on_a_small_batch():
    torch.manual_seed(0)
    model = StreamMuseModel(MICRO)
    rng = np.random.default_rng(5)
    rows = torch.as_tensor(np.stack([interleave(_frames(rng, 8), _frames(rng, 8)) for _ in range(2)]).astype(np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(model(rows)["loss"])
    for _ in range(40):
        loss = model(rows)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model(rows)["loss"]) < 0.5 * first


def test_nll_counts_accompaniment_tokens(engine):
    rng = np.random.default_rng(6)
    m, a = _frames(rng, 20), _frames(rng, 20)
    total, n = engine.nll(m, a)
    assert n == int((a != vocab.PAD).sum())  # notes + EOF of every A frame
    assert total > 0


@pytest.mark.parametrize("gl", [0, 33])
def test_bad_gen_len(engine, gl):
    with pytest.raises(StreamMuseError, match="gen_len"):
        engine.infer(engine.new_session(), 0, empty_frames(0), gl)


def test_bad_tokens_and_frames(engine):
    bad = empty_frames(2)
    bad[1, 0] = vocab.VOCAB_SIZE + 5
    with pytest.raises(StreamMuseError, match="outside the vocabulary"):
        engine.infer(engine.new_session(), 2, bad, 1)
    descending = empty_frames(1)
    descending[0, :3] = [500, 400, vocab.EOF]
    with pytest.raises(StreamMuseError, match="not a frame"):
        engine.infer(engine.new_session(), 1, descending, 1)
    with pytest.raises(StreamMuseError, match="must end just before"):
        engine.infer(engine.new_session(), 5, empty_frames(2), 1, melody_start=0)


def test_bad_checkpoints(tmp_path, engine):
    with pytest.raises(StreamMuseError, match="no such folder"):
        StreamingEngine.load(tmp_path / "nope")
    engine.model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(StreamMuseError, match="corrupt"):
        StreamingEngine.load(tmp_path)
    engine.model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["hidden_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(StreamMuseError, match="does not match the weights"):
        StreamingEngine.load(tmp_path)


def test_shipped_checkpoint_accompanies_a_test_song():
    from pathlib import Path

    from streammuse.datasets.frames import song_to_frames
    from streammuse.datasets.testset import load_testset

    song = load_testset(Path(__file__).parents[1] / "testset", max_bars=1)[0]
    m, _, _ = song_to_frames(song)
    acc = generate_offline(StreamingEngine.load(), m[:16], Sampling(seed=0))
    check_frames(acc, "generated")
    notes = acc[vocab.is_note(acc)]
    assert len(notes) > 0
    pitch, _ = vocab.token_to_note(notes.astype(np.int64))
    assert pitch.min() >= vocab.MIN_PITCH and pitch.max() <= vocab.MAX_PITCH


def test_offline_songs_batched_are_each_what_they_are_alone():
    # The offline baseline generates a chunk of songs in one engine call per tick; songs of
    # different lengths and seeds must each get the tokens they get alone.
    from pathlib import Path

    from streammuse.datasets.frames import song_to_frames
    from streammuse.datasets.testset import load_testset

    engine = StreamingEngine.load()
    songs = load_testset(Path(__file__).parents[1] / "testset", max_bars=2)[:3]
    melodies = [song_to_frames(s)[0][: 24 + 4 * i] for i, s in enumerate(songs)]
    samplings = [Sampling(seed=7 + i) for i in range(3)]
    together = generate_offline_batch(engine, melodies, samplings)
    for m, sp, got in zip(melodies, samplings, together):
        assert got.shape == m.shape
        np.testing.assert_array_equal(got, generate_offline(engine, m, sp))
    assert sum(int(vocab.is_note(a).sum()) for a in together) > 10


def test_a_sessions_output_does_not_depend_on_its_batch(engine):
    rng = np.random.default_rng(4)
    melodies = [_frames(rng, 10) for _ in range(3)]

    def play(together: bool) -> list[np.ndarray]:
        states = [engine.new_session(Sampling(seed=10 + i)) for i in range(3)]
        out: list[list[np.ndarray]] = [[] for _ in states]
        for s in (2, 4, 6):
            reqs = [EngineRequest(st, s, m[s - 2 : s], 3 + i) for i, (st, m) in enumerate(zip(states, melodies))]
            answers = engine.infer_batch(reqs) if together else [engine.infer_batch([r])[0] for r in reqs]
            for i, a in enumerate(answers):
                out[i].append(a)
        return [np.concatenate(o) for o in out]

    for alone, batched in zip(play(False), play(True)):
        np.testing.assert_array_equal(alone, batched)
