"""The streaming engine's host side (docs/design.md, "The engine"): sessions, rollback,
sliding window, slots; the device side is :class:`~streammuse.model.runner.ModelRunner`.

A session is the paper's interleaved sequence InterL(M, A) (section III-B) as far as the
engine knows it: the true melody the client sent, the accompaniment the engine generated
(the latest generation for each tick), and the global predictor's cache over
[BOS, rows win_start .. ) in a slot of the runner's slot cache. A request at tick s with
gen_len GL:

1. appends the true melody for ticks up to s (a gap in the accompaniment before s
   becomes empty frames; the melody the engine had guessed is replaced by the truth);
2. rolls the cache back to the longest prefix of rows that is still what the session
   now says, and feeds the rest (:meth:`ModelRunner.prefill`);
3. generates A[s], M[s] (a guess), A[s+1], ..., A[s+GL-1]: GL ticks of the runner, in one
   device call whose tokens come back once.

The context is bounded: when the cache would pass W = ``max_frames`` rows it is rebuilt
from the last W - W/4 rows, so a request costs the same at tick 64 or tick 10 000.

On CUDA the model runs in bf16 and each call replays a CUDA graph per batch bucket
(:mod:`streammuse.model.cuda_graphs`); on the CPU in float32, eagerly.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import numpy as np
import torch

from streammuse.contract import MAX_GEN_LEN  # C: no generation is longer
from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames, interleave
from streammuse.errors import StreamMuseError
from streammuse.model.checkpoint import SHIPPED_CHECKPOINT, load_model, weights_digest
from streammuse.model.config import StreamMuseConfig, preset
from streammuse.model.modeling import StreamMuseModel
from streammuse.model.runner import ModelRunner
from streammuse.model.tick_batch import TickBatch
from streammuse.model.sampling import RowSampling, Sampling
from streammuse.model.session import EngineRequest, GenJob, SessionState, check_chunks, check_frames

__all__ = ["MAX_GEN_LEN", "EngineRequest", "GenJob", "Sampling", "SessionState", "StreamingEngine", "check_frames",
           "generate_offline", "generate_offline_batch", "load_model"]


class StreamingEngine:
    """Frame-synchronous streaming inference over one :class:`StreamMuseModel` (implements
    :class:`streammuse.model.protocol.SteppingEngine`)."""

    def __init__(self, model: StreamMuseModel, device: str | torch.device = "cpu", model_id: str = "streammuse",
                 dtype: torch.dtype | None = None, cuda_graphs: bool = True, compact: bool | None = None,
                 fixed_shapes: bool | None = None) -> None:
        self.device = torch.device(device)
        dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.model = model.to(self.device, dtype).eval()
        self.config: StreamMuseConfig = model.config
        self.model_id = model_id
        self.runner = ModelRunner(self.model, self.device, dtype, cuda_graphs=cuda_graphs, compact=compact,
                                  fixed_shapes=fixed_shapes)
        self.slots = self.runner.cache
        self._lock = threading.Lock()

    @property
    def device_label(self) -> str:
        """Where the model runs, for a run's manifest: e.g. ``cpu float32``, ``cuda NVIDIA H200 bfloat16``."""
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        if self.device.type == "cuda":
            return f"cuda {torch.cuda.get_device_name(self.device)} {dtype}{' graphs' if self.runner.graphed else ''}"
        return f"{self.device.type} {dtype}"

    # -- construction ------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", cuda_graphs: bool = True) -> "StreamingEngine":
        """The engine over the checkpoint folder ``path`` (None: the shipped ``tiny``)."""
        model = load_model(path)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise StreamMuseError(f"device {device!r} asked for, but no CUDA GPU is available")
        folder = Path(path) if path is not None else SHIPPED_CHECKPOINT
        return cls(model, device, model_id=f"{folder.name}-{weights_digest(folder)}", cuda_graphs=cuda_graphs)

    @classmethod
    def random(cls, config: str | StreamMuseConfig = "tiny", seed: int = 0, device: str = "cpu",
               cuda_graphs: bool = True, **kwargs) -> "StreamingEngine":
        """An engine over random weights (tests, benchmarks of speed alone)."""
        cfg = preset(config) if isinstance(config, str) else config
        torch.manual_seed(seed)
        return cls(StreamMuseModel(cfg), device, model_id=f"random-{seed}", cuda_graphs=cuda_graphs, **kwargs)

    def new_session(self, sampling: Sampling | None = None) -> SessionState:
        """A fresh session: no melody, no accompaniment, an empty cache.

        Its cache slot is taken on its first request (inside :meth:`begin`, so that the slot
        buffers only change in the thread that runs the model) and given back by
        :meth:`release` or when the state is garbage-collected.
        """
        return SessionState(sampling or Sampling(), empty_frames(0), empty_frames(0), slots=self.slots)

    def release(self, state: SessionState) -> None:
        """Give the session's cache slot back; the state cannot be used afterwards (call it
        between requests: never while a call holding this session runs)."""
        if state._finalizer is not None:
            state._finalizer()  # frees the slot (at the next call) exactly once
        state.slot, state.live, state.released = None, False, True

    # -- requests ----------------------------------------------------------------------
    def infer(self, state: SessionState, request_tick: int, melody_frames, gen_len: int,
              melody_start: int | None = None) -> np.ndarray:
        """Accompaniment frames ``(GL, FRAME_LEN)`` for ticks s .. s+GL-1.

        Args:
            state: from :meth:`new_session`.
            request_tick: s, the first tick to generate.
            melody_frames: true melody frames for ticks [melody_start, s).
            gen_len: GL, 1 .. 32.
            melody_start: first tick of ``melody_frames``; default ``s - len(melody_frames)``.
        """
        return self.infer_batch([EngineRequest(state, request_tick, melody_frames, gen_len, melody_start)])[0]

    def infer_batch(self, requests: list[EngineRequest]) -> list[np.ndarray]:
        """Serve many sessions' requests at once: one prefill, then max(GL) ticks of every
        row in one runner call. A session's output is the same whatever else is in the batch."""
        jobs = self.begin(requests)
        if not jobs:
            return []
        ticks = max(job.gen_len for job in jobs)
        with self._lock, torch.inference_mode():
            frames = self._generate(jobs, ticks, feed_last=False)
            for row, job in enumerate(jobs):
                self._keep(job, frames[row], job.gen_len)
        return [job.result() for job in jobs]

    def begin(self, requests: list[EngineRequest]) -> list[GenJob]:
        """Start requests without generating a frame: write each one's melody, roll its cache
        back and feed it. :meth:`step` then generates a tick at a time; jobs may begin
        while others are between steps (continuous batching), and a session's tokens do not
        depend on who else is running.

        Raises:
            StreamMuseError: a bad request (nothing of the batch began), or a session that
                already has a job running.
        """
        prepared = []
        seen: set[int] = set()
        chunks = check_chunks([req.melody_frames for req in requests])
        for req, m_new in zip(requests, chunks):
            state = req.state
            if id(state) in seen or getattr(state, "running", False):
                raise StreamMuseError("infer: one session has two requests running at once")
            seen.add(id(state))
            prepared.append(self._accept(state, int(req.request_tick), m_new, int(req.gen_len), req.melody_start))
        with self._lock, torch.inference_mode():
            self.slots.collect()
            rows = [self._roll_back_and_slide(state, s, gl) for state, s, gl in prepared]
            self._prefill([state for state, _, _ in prepared], rows)
        for state, _, _ in prepared:
            state.running = True
        return [GenJob(state, s, gl) for state, s, gl in prepared]

    def step(self, jobs: list[GenJob]) -> None:
        """Advance every unfinished job one tick, in one runner call: A[s+i] for each; the
        jobs with more to generate keep it fed, with the melody guess M[s+i] after it."""
        jobs = [job for job in jobs if not job.done]
        if not jobs:
            return
        with self._lock, torch.inference_mode():
            feed = any(len(job.frames) + 1 < job.gen_len for job in jobs)
            frames = self._generate(jobs, 1, feed_last=feed)
            for row, job in enumerate(jobs):
                self._keep(job, frames[row], 1)

    def rebuild(self, state: SessionState, melody_frames, accompaniment_frames) -> None:
        """Replace the session's history with context re-sent by a client (M[:s], A[:s]).

        The cache is dropped and rebuilt on the next request (with the sliding window).
        """
        m = check_frames(melody_frames, "melody_frames")
        a = check_frames(accompaniment_frames, "accompaniment_frames")
        if len(a) > len(m):
            raise StreamMuseError(f"rebuild: {len(a)} accompaniment frames but only {len(m)} melody frames")
        state.melody = m.copy()
        state.accompaniment = np.concatenate([a, empty_frames(len(m) - len(a))])
        state.live, state.win_start = False, 0
        state.cache_rows = empty_frames(0)

    def nll(self, melody_frames, accompaniment_frames) -> tuple[float, int]:
        """Teacher-forced NLL of the accompaniment tokens given InterL(M, A).

        Returns ``(sum of -log p in nats, number of A tokens scored)`` (notes and EOF of
        every A frame). Long songs are scored in windows of W rows, each row with at
        least W/2 rows of context (except at the song's start).
        """
        m = check_frames(melody_frames, "melody_frames")
        a = check_frames(accompaniment_frames, "accompaniment_frames")
        if len(m) != len(a):
            raise StreamMuseError(f"nll: {len(m)} melody frames but {len(a)} accompaniment frames")
        rows = torch.as_tensor(interleave(m, a).astype(np.int64), device=self.device)
        w = self.config.max_frames
        half = w // 2
        total, count = 0.0, 0
        with torch.inference_mode():
            start = 0
            while True:
                lo = max(0, start - half)
                window = rows[lo : start + half if start else w]
                # The global predictor needs the whole window; the local decoder (most of
                # the cost) runs only on the rows scored: the A rows from `start` on.
                parts = torch.arange(len(window), device=self.device) % 2
                vecs = self.model.encode_frames(window, parts)
                states = self.model.global_step(torch.cat([self.model.bos_embeds(1)[0], vecs[:-1]]).unsqueeze(0))
                scored = torch.arange(start - lo, len(window), device=self.device)
                scored = scored[(lo + scored) % 2 == 0]
                tgt = window[scored]
                logits = self.model.decode_logits(states[0, scored], parts[scored], tgt[:, :-1]).float()
                lp = torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
                keep = tgt != vocab.PAD
                total -= float(lp[keep].sum())
                count += int(keep.sum())
                start = lo + len(window)
                if start >= len(rows):
                    break
        return total, count

    # -- internals ---------------------------------------------------------------------
    def _accept(self, state: SessionState, s: int, m_new: np.ndarray, gl: int, melody_start: int | None):
        """Validate a request (its frames are checked already) and write its melody into the
        session's history."""
        if not isinstance(state, SessionState):
            raise StreamMuseError("infer: state must come from new_session()")
        if state.released:
            raise StreamMuseError("infer: this session was released")
        if not 1 <= gl <= MAX_GEN_LEN:
            raise StreamMuseError(f"gen_len must be in 1..{MAX_GEN_LEN}, got {gl}")
        if s < 0:
            raise StreamMuseError(f"request_tick must be >= 0, got {s}")
        start = s - len(m_new) if melody_start is None else int(melody_start)
        if start < 0 or start + len(m_new) != s:
            raise StreamMuseError(
                f"melody_frames cover ticks {start}..{start + len(m_new) - 1}, but must end just before request_tick {s}")
        mel = state.melody
        if start > len(mel):  # ticks nobody sent: silence, as the client would have played it
            mel = np.concatenate([mel, empty_frames(start - len(mel))])
        state.melody = np.concatenate([mel[:start], m_new, mel[s:]])
        if len(state.accompaniment) < s:
            state.accompaniment = np.concatenate([state.accompaniment, empty_frames(s - len(state.accompaniment))])
        state.requests += 1
        return state, s, gl

    def _reset_cache(self, state: SessionState, win_start: int) -> None:
        """Empty the session's slot (taking one on its first request); BOS is fed next."""
        if state.slot is None:
            state.slot = self.slots.allocate()
            state._finalizer = weakref.finalize(state, self.slots.free_later, state.slot)
        self.slots.crop(state.slot, 0)
        state.live, state.win_start = True, win_start
        state.cache_rows = empty_frames(0)

    def _roll_back_and_slide(self, state: SessionState, s: int, gl: int) -> np.ndarray:
        """Roll the cache back to what is still true and slide the window; returns the
        rows < 2s still to feed."""
        w = self.config.max_frames
        end = 2 * s + 2 * gl - 2  # rows in the cache once this request is generated
        if not state.live or end - state.win_start > w or 2 * s < state.win_start:
            win = max(0, end - self.config.rows_kept_on_slide)
            self._reset_cache(state, win + (win % 2))
        first_tick = state.win_start // 2  # win_start is even: row 2t is A[t]
        desired = interleave(state.melody[first_tick:s], state.accompaniment[first_tick:s])
        n = min(len(desired), len(state.cache_rows))
        same = np.all(desired[:n] == state.cache_rows[:n], axis=1)
        keep = n if same.all() else int(np.argmin(same))
        if keep < len(state.cache_rows):
            self.slots.crop(state.slot, 1 + keep)
            state.cache_rows = state.cache_rows[:keep]
        return desired[keep:]

    def _batch(self, states: list[SessionState], first_ticks: list[int]) -> TickBatch:
        """The runner's view of these sessions (one host-to-device copy per field)."""
        slots = np.array([st.slot for st in states], dtype=np.int64)
        positions = self.slots.lengths[slots]
        lo = int(slots[0])
        dense = np.array_equal(slots, np.arange(lo, lo + len(slots)))
        ints = torch.as_tensor(np.stack([slots, positions, [st.sampling.seed for st in states], first_ticks]),
                               device=self.device)
        return TickBatch(ints[0], ints[1], ints[2], ints[3], RowSampling.of([st.sampling for st in states], self.device),
                         slice(lo, lo + len(slots)) if dense else None, int(positions.max()),
                         bool((positions == positions[0]).all()))

    def _prefill(self, states: list[SessionState], rows: list[np.ndarray]) -> None:
        """Feed every session's new rows in one runner call (an empty slot gets BOS first)."""
        need_bos = [self.slots.lengths[st.slot] == 0 for st in states]
        counts = np.array([len(r) + int(b) for r, b in zip(rows, need_bos)])
        if not counts.any():
            return
        feeding = [i for i, c in enumerate(counts) if c]
        states = [states[i] for i in feeding]
        index = np.zeros((len(feeding), int(counts.max())), dtype=np.int64)
        parts, offset = [], 1
        for b, i in enumerate(feeding):
            r, bos = rows[i], int(need_bos[i])
            index[b, bos : bos + len(r)] = np.arange(offset, offset + len(r))
            first = states[b].win_start + len(states[b].cache_rows)
            parts.append(np.arange(first, first + len(r)) % 2)
            offset += len(r)
        frames = np.concatenate([rows[i] for i in feeding]) if offset > 1 else empty_frames(0)
        self.runner.prefill(self._batch(states, [0] * len(states)), frames, np.concatenate(parts), index)
        for st, i in zip(states, feeding):
            self.slots.lengths[st.slot] += counts[i]
            if len(rows[i]):
                st.cache_rows = np.concatenate([st.cache_rows, rows[i].astype(np.int16)])

    def _generate(self, jobs: list[GenJob], ticks: int, feed_last: bool) -> np.ndarray:
        """``ticks`` runner ticks for every job from its next frame on; the frames come back
        to the host here, once: ``(B, rows, F)`` int16."""
        states = [job.state for job in jobs]
        batch = self._batch(states, [job.tick + len(job.frames) for job in jobs])
        return self.runner.generate(batch, ticks, feed_last).cpu().numpy().astype(np.int16)

    def _keep(self, job: GenJob, frames: np.ndarray, ticks: int) -> None:
        """Take ``ticks`` of a row's frames (A, M, A, ...) into the job and its session: the
        A frames are answers; the rows fed while the job still runs extend the cache."""
        st = job.state
        for i in range(ticks):
            if job.done:
                break
            tick = job.tick + len(job.frames)
            acc = frames[2 * i]
            job.frames.append(acc)
            if len(st.accompaniment) <= tick:
                st.accompaniment = np.concatenate([st.accompaniment, empty_frames(tick + 1 - len(st.accompaniment))])
            st.accompaniment[tick] = acc
            if not job.done:  # A[tick] and the guess M[tick] were fed
                st.cache_rows = np.concatenate([st.cache_rows, frames[2 * i : 2 * i + 2]])
                self.slots.lengths[st.slot] += 2
        st.running = not job.done


def generate_offline(engine: StreamingEngine, melody_frames, sampling: Sampling | None = None) -> np.ndarray:
    """The paper's offline baseline: tick by tick (I = 1, GL = 1) with the full true
    melody history and no latency. Returns ``(T, FRAME_LEN)`` accompaniment frames."""
    return generate_offline_batch(engine, [melody_frames], [sampling])[0]


def generate_offline_batch(engine: StreamingEngine, melodies: list, samplings: list[Sampling | None]) -> list[np.ndarray]:
    """:func:`generate_offline` for many songs at once: tick t of every song still playing
    is one batched request (a song's tokens do not depend on its batch partners, so each
    is what it would be alone, up to float rounding)."""
    ms = [check_frames(m, "melody_frames") for m in melodies]
    states = [engine.new_session(s) for s in samplings]
    outs = [np.empty_like(m) for m in ms]
    for t in range(max((len(m) for m in ms), default=0)):
        live = [i for i, m in enumerate(ms) if t < len(m)]
        answers = engine.infer_batch([EngineRequest(states[i], t, ms[i][t - 1 : t] if t else ms[i][:0], 1)
                                       for i in live])
        for i, frames in zip(live, answers):
            outs[i][t] = frames[0]
    for st in states:
        engine.release(st)
    return outs
