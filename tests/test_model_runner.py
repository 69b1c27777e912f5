"""The runner, the engine's device side: its logits are the training forward's, its
fixed-shape (CUDA) configuration draws the CPU's tokens, a request run tick by tick is
the request run whole, and a device call never reads the device from the host."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames, interleave
from streammuse.model.config import StreamMuseConfig
from streammuse.model.engine import EngineRequest, StreamingEngine
from streammuse.model.opcount import HOST_READS
from streammuse.model.tick_batch import TickBatch
from streammuse.model.sampling import RowSampling, Sampling

MICRO = StreamMuseConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, global_layers=2,
                         encoder_layers=1, decoder_layers=2, max_frames=32)


def _frames(rng: np.random.Generator, n: int, most: int = 4) -> np.ndarray:
    out = empty_frames(n)
    for i in range(n):
        k = int(rng.integers(0, most + 1))
        pitches = np.sort(rng.choice(np.arange(30, 100), size=k, replace=False))
        out[i, :k] = vocab.NOTE_OFFSET + (pitches - vocab.MIN_PITCH) * vocab.N_DURATIONS + int(rng.integers(0, 15))
        out[i, k] = vocab.EOF
    return out


def _fixed(seed: int) -> StreamingEngine:
    """The CUDA configuration on the CPU: every decoder position, the whole capacity read
    under the mask, slots gathered by index."""
    return StreamingEngine.random(MICRO, seed=seed, compact=False, fixed_shapes=True)


def test_runner_logits_equal_the_training_forward():
    engine = StreamingEngine.random(MICRO, seed=4)
    runner = engine.runner
    rng = np.random.default_rng(0)
    rows = interleave(_frames(rng, 9), _frames(rng, 9))  # 18 rows, A first
    with torch.inference_mode():
        want = engine.model(torch.as_tensor(rows.astype(np.int64))[None])["logits"][0]  # (R, F, V)
        slot = runner.cache.allocate()

        def batch(position: int) -> TickBatch:
            t = torch.tensor([slot])
            return TickBatch(t, torch.tensor([position]), t * 0, t * 0, RowSampling.of([Sampling()], engine.device),
                             slice(slot, slot + 1), position)

        runner.prefill(batch(0), rows, np.arange(len(rows)) % 2, np.arange(len(rows) + 1)[None])
        for r in range(len(rows)):
            got = runner.teacher_logits(batch(r + 1), torch.as_tensor(rows[r : r + 1].astype(np.int64)), r % 2)
            torch.testing.assert_close(got[0], want[r], rtol=1e-5, atol=1e-5)


def _play(engine: StreamingEngine, melodies: list[np.ndarray], stepwise: bool = False) -> list[np.ndarray]:
    """Each session asks every 2 ticks with GL 3 / 4 / 5 (rollbacks at every request)."""
    states = [engine.new_session(Sampling(seed=20 + i, top_k=(0, 12, 40)[i % 3], top_p=(0.9, 1.0)[i % 2],
                                          temperature=(1.0, 0.7)[i % 2])) for i in range(len(melodies))]
    out: list[list[np.ndarray]] = [[] for _ in states]
    for s in range(2, 24, 2):
        reqs = [EngineRequest(st, s, m[s - 2 : s], 3 + i % 3) for i, (st, m) in enumerate(zip(states, melodies))]
        if stepwise:
            jobs = engine.begin(reqs)
            while not all(j.done for j in jobs):
                engine.step(jobs)
            answers = [j.result() for j in jobs]
        else:
            answers = engine.infer_batch(reqs)
        for i, a in enumerate(answers):
            out[i].append(a)
    return [np.concatenate(o) for o in out]


def test_fixed_shapes_and_tick_by_tick_draw_the_cpu_tokens():
    rng = np.random.default_rng(1)
    melodies = [_frames(rng, 26) for _ in range(5)]
    cpu = _play(StreamingEngine.random(MICRO, seed=5), melodies)
    fixed = _play(_fixed(5), melodies)
    stepped = _play(StreamingEngine.random(MICRO, seed=5), melodies, stepwise=True)
    for a, b, c in zip(cpu, fixed, stepped):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert sum(int(vocab.is_note(a).sum()) for a in cpu) > 50  # real frames, not silence


class _RefuseHostReads(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_READS:
            raise AssertionError(f"host read inside a device call: {func}")
        return func(*args, **(kwargs or {}))


def _refuse(*_args, **_kwargs):
    raise AssertionError("tensor converted on the host inside a device call")


def _device_call(engine: StreamingEngine, monkeypatch) -> None:
    m = _frames(np.random.default_rng(2), 12)
    states = [engine.new_session(Sampling(seed=i)) for i in range(3)]
    engine.infer_batch([EngineRequest(st, 10, m[:10], 2) for st in states])
    jobs = engine.begin([EngineRequest(st, 11, m[10:11], 3) for st in states])
    batch = engine._batch(states, [j.tick for j in jobs])
    with monkeypatch.context() as patch, torch.inference_mode():
        for name in ("tolist", "numpy", "item"):
            patch.setattr(torch.Tensor, name, _refuse)
        with _RefuseHostReads():
            engine.runner.generate_eager(batch, 3, feed_last=False)


def test_a_fixed_shape_device_call_never_reads_the_device(monkeypatch):
    _device_call(_fixed(6), monkeypatch)
    # The check can fail: the CPU's compacting decoder reads which frames are still open.
    with pytest.raises(AssertionError, match="host"):
        _device_call(StreamingEngine.random(MICRO, seed=6), monkeypatch)


def test_checkpoints_of_llama_layers_load_through_the_key_mapping(tmp_path):
    # The shipped checkpoint was written with transformers' Llama layers (q/k/v and
    # gate/up apart): the mapping stacks them, and what we save loads back unchanged.
    engine = StreamingEngine.load()
    assert engine.model_id.startswith("tiny-")
    engine.model.save_pretrained(tmp_path)
    again = StreamingEngine.load(tmp_path)
    for (name, a), (_, b) in zip(engine.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert "global_predictor.layers.0.self_attn.qkv_proj.weight" in f.keys()
