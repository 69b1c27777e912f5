"""The batched slot cache: a session's tokens do not depend on its batch (alone, 7, 64),
rollback and slides equal a recompute, and slots are taken, freed and reused."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames
from streammuse.errors import StreamMuseError
from streammuse.model.config import StreamMuseConfig
from streammuse.model.engine import EngineRequest, StreamingEngine
from streammuse.model.sampling import Sampling, counter_uniforms

MICRO = StreamMuseConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, global_layers=2,
                         encoder_layers=1, decoder_layers=1, max_frames=16)
TICKS = 9  # with W = 16 rows (8 ticks) and GL = 5 the window slides from tick 5 on


def _frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random valid frames of 0..2 notes."""
    out = empty_frames(n)
    for i in range(n):
        k = int(rng.integers(0, 3))
        pitches = np.sort(rng.choice(np.arange(40, 90), size=k, replace=False))
        out[i, :k] = vocab.NOTE_OFFSET + (pitches - vocab.MIN_PITCH) * vocab.N_DURATIONS + 3
        out[i, k] = vocab.EOF
    return out


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.random(MICRO, seed=1)


def _play(engine: StreamingEngine, melodies: list[np.ndarray], groups: list[list[int]]) -> list[np.ndarray]:
    """Every session asks at ticks 1..TICKS-1 (I = 1, GL = 3 or 5); each group of session
    indices is one infer_batch per tick. Returns each session's tokens, in order."""
    states = [engine.new_session(Sampling(seed=100 + i, top_k=(i % 3) * 10, top_p=0.9 + 0.05 * (i % 2)))
              for i in range(len(melodies))]
    out: list[list[np.ndarray]] = [[] for _ in melodies]
    for s in range(1, TICKS):
        for group in groups:
            reqs = [EngineRequest(states[i], s, melodies[i][s - 1 : s], 3 + 2 * (i % 2)) for i in group]
            for i, acc in zip(group, engine.infer_batch(reqs)):
                out[i].append(acc)
    for st in states:
        engine.release(st)
    return [np.concatenate(o) for o in out]


def test_tokens_are_the_same_alone_in_7_and_in_64(engine):
    rng = np.random.default_rng(11)
    melodies = [_frames(rng, TICKS) for _ in range(64)]
    order = list(rng.permutation(64))  # batch order and slot order differ
    alone = _play(engine, melodies[:7], [[i] for i in range(7)])
    seven = _play(engine, melodies[:7], [[6, 2, 0, 5, 1, 3, 4]])
    sixty_four = _play(engine, melodies, [order])
    for i in range(7):
        np.testing.assert_array_equal(seven[i], alone[i])
        np.testing.assert_array_equal(sixty_four[i], alone[i])
    assert len({a.tobytes() for a in sixty_four}) == 64  # the sessions really differ


def test_slots_are_taken_released_reused_and_grown():
    engine = StreamingEngine.random(MICRO, seed=2)
    first = engine.slots.slots
    m = _frames(np.random.default_rng(3), 4)
    states = [engine.new_session() for _ in range(first + 1)]
    assert all(st.slot is None for st in states)  # taken on the first request, not before
    engine.infer_batch([EngineRequest(st, 2, m[:2], 2) for st in states])
    assert sorted(st.slot for st in states) == list(range(first + 1))
    assert engine.slots.slots == 2 * first  # the buffers doubled, keeping what they held
    engine.release(states[3])
    with pytest.raises(StreamMuseError, match="released"):
        engine.infer(states[3], 3, m[2:3], 1)
    fresh = engine.new_session()
    engine.infer(fresh, 1, m[:1], 1)
    assert fresh.slot == 3  # the lowest free slot
    slot = states[5].slot
    del states[5]
    gc.collect()
    other = engine.new_session()
    engine.infer(other, 1, m[:1], 1)
    assert other.slot == slot  # freed by the garbage collector, reused at the next batch


def test_rebuild_then_infer_equals_a_fresh_session(engine):
    m = _frames(np.random.default_rng(4), 10)
    a = _frames(np.random.default_rng(5), 6)
    used = engine.new_session(Sampling(seed=1))
    engine.infer(used, 4, m[:4], 3)
    engine.rebuild(used, m[:6], a)
    assert not used.live
    fresh = engine.new_session(Sampling(seed=1))
    engine.rebuild(fresh, m[:6], a)
    np.testing.assert_array_equal(engine.infer(used, 8, m[6:8], 4), engine.infer(fresh, 8, m[6:8], 4))
    assert used.cached_positions == fresh.cached_positions


def test_counter_uniforms_depend_only_on_seed_tick_and_column():
    u = counter_uniforms(torch.tensor([0, 7, 7]), torch.tensor([3, 3, 4]), 4096)
    alone = counter_uniforms(torch.tensor([7]), torch.tensor([3]), 4096)
    assert torch.equal(u[1], alone[0])
    assert not torch.equal(u[1], u[2]) and not torch.equal(u[0], u[1])
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01  # 12 288 draws: the mean's sd is 0.0026


def test_rollback_gives_the_tokens_of_a_session_rebuilt_from_scratch():
    # W = 64 rows: no slide in 20 ticks, so the rebuilt session's context is the same rows.
    cfg = StreamMuseConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, global_layers=2,
                           encoder_layers=1, decoder_layers=1, max_frames=64)
    eng = StreamingEngine.random(cfg, seed=3)
    m = _frames(np.random.default_rng(8), 20)
    state = eng.new_session(Sampling(seed=5))
    for s, gl in ((2, 4), (3, 3), (5, 5), (6, 2), (9, 4), (10, 3), (13, 5), (14, 1), (17, 3)):
        acc = np.concatenate([state.accompaniment, empty_frames(s)])[:s]
        ref = eng.new_session(Sampling(seed=5))
        eng.rebuild(ref, m[:s], acc)
        want = eng.infer(ref, s, m[s:s], gl, melody_start=s)
        got = eng.infer(state, s, m[max(0, s - 3) : s], gl)  # rolls back to the first wrong guess
        np.testing.assert_array_equal(got, want)
        assert ref.cached_positions == state.cached_positions


def test_after_rollbacks_and_slides_the_cache_equals_a_recompute(engine):
    m = _frames(np.random.default_rng(9), 30)
    state = engine.new_session(Sampling(seed=2))
    starts = set()
    for s in range(1, 30, 2):
        engine.infer(state, s, m[max(0, s - 2) : s], 3 + s % 3)
        starts.add(state.win_start)
        rows = torch.as_tensor(state.cache_rows.astype(np.int64))
        with torch.inference_mode():
            parts = (state.win_start + torch.arange(len(rows))) % 2
            vecs = engine.model.encode_frames(rows, parts)
            full = engine.model.global_step(torch.cat([engine.model.bos_embeds(1)[0], vecs]).unsqueeze(0))
        torch.testing.assert_close(state.hidden, full[0], rtol=1e-5, atol=1e-5)
    assert len(starts) > 3  # the window slid several times
