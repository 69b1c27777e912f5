"""The streaming engine (docs/design.md section 2): sessions, rollback, sliding window.

A session is the paper's interleaved sequence InterL(M, A) (section III-B) as far as the
engine knows it: the true melody the client sent, the accompaniment the engine generated
(the latest generation for each tick), and the global predictor's KV cache over
[BOS, rows win_start .. ). A request at tick s with gen_len GL:

1. appends the true melody for ticks up to s (a gap in the accompaniment before s
   becomes empty frames; the melody the engine had guessed is replaced by the truth);
2. rolls the cache back to the longest prefix of rows that is still what the session
   now says, and feeds the rest;
3. generates A[s], M[s] (a guess), A[s+1], ..., A[s+GL-1]: 2*GL - 1 frames (the final
   melody guess is never used, so it is not generated) and returns the GL A frames.

The context is bounded: when the cache would pass W = ``max_frames`` rows it is rebuilt
from the last W - W/4 rows, so a request costs the same at tick 64 or tick 10 000.

Every session's cache is a slot of one :class:`~streammuse.model.batched_cache.SlotCache`,
so a global-predictor step for B sessions is one batched call (a fixed number of kernels
whatever B is); the local encoder and decoder run batched over every session's open frame.
On CUDA the model runs in bf16, the one-row step replays a CUDA graph per batch bucket
(:mod:`streammuse.model.cuda_step`), and tokens are drawn by a counter-based sampler on the
device; on CPU none of that is touched (float32, eager, each session's ``torch.Generator``).
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
from streammuse.model.batched_cache import SlotCache, slot_step
from streammuse.model.checkpoint import SHIPPED_CHECKPOINT, load_model, weights_digest
from streammuse.model.config import StreamMuseConfig, preset
from streammuse.model.modeling import PART_A, PART_M, StreamMuseModel
from streammuse.model.sampling import Sampling, grammar_mask, note_pitch_index, sample_rows, sample_rows_counter
from streammuse.model.session import GenJob, SessionState, check_chunks, check_frames

__all__ = ["MAX_GEN_LEN", "GenJob", "Sampling", "SessionState", "StreamingEngine", "check_frames", "generate_offline",
           "generate_offline_batch", "load_model"]



class StreamingEngine:
    """Frame-synchronous streaming inference over one :class:`StreamMuseModel`."""

    def __init__(self, model: StreamMuseModel, device: str | torch.device = "cpu", model_id: str = "streammuse",
                 dtype: torch.dtype | None = None, cuda_graphs: bool = True) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
        self.model = model.to(self.device, dtype).eval()
        self.config: StreamMuseConfig = model.config
        self.model_id = model_id
        self._pitch_index = note_pitch_index(self.device)
        cfg = self.config
        self.slots = SlotCache(cfg.global_layers, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads,
                               cfg.hidden_size, cfg.max_frames + 1, self.device, dtype)
        self.counter_rng = cuda  # device-side draws on CUDA; CPU keeps each session's Generator
        self._graphs = None
        if cuda and cuda_graphs:  # never built on CPU
            from streammuse.model.cuda_step import GraphedStep

            self._graphs = GraphedStep(self.model.global_predictor, self.slots)
        self._lock = threading.Lock()

    @property
    def device_label(self) -> str:
        """Where the model runs, for a run's manifest: e.g. ``cpu float32``, ``cuda NVIDIA H200 bfloat16``."""
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        if self.device.type == "cuda":
            return f"cuda {torch.cuda.get_device_name(self.device)} {dtype}{'' if self._graphs is None else ' graphs'}"
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
               cuda_graphs: bool = True) -> "StreamingEngine":
        """An engine over random weights (tests, benchmarks of speed alone)."""
        cfg = preset(config) if isinstance(config, str) else config
        torch.manual_seed(seed)
        return cls(StreamMuseModel(cfg), device, model_id=f"random-{seed}", cuda_graphs=cuda_graphs)

    def new_session(self, sampling: Sampling | None = None) -> SessionState:
        """A fresh session: no melody, no accompaniment, an empty cache.

        Its cache slot is taken on its first request (inside :meth:`infer_batch`, so that
        the slot buffers only change in the thread that runs the model) and given back by
        :meth:`release` or when the state is garbage-collected.
        """
        sampling = sampling or Sampling()
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(sampling.seed))
        return SessionState(sampling, gen, empty_frames(0), empty_frames(0), slots=self.slots)

    def release(self, state: SessionState) -> None:
        """Give the session's cache slot back; the state cannot be used afterwards (call it
        between requests: never while an ``infer_batch`` holding this session runs)."""
        if state._finalizer is not None:
            state._finalizer()  # frees the slot (at the next batch) exactly once
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
        return self.infer_batch([(state, request_tick, melody_frames, gen_len, melody_start)])[0]

    def infer_batch(self, requests: list[tuple]) -> list[np.ndarray]:
        """Serve many sessions' requests at once: each is ``(state, s, melody_frames, GL)``
        or ``(state, s, melody_frames, GL, melody_start)``.

        Every global predictor step runs all the sessions that add rows in one batched
        call over the slot cache; the local encoder and decoder run batched across
        sessions too. A session's output is the same whatever else is in the batch.
        """
        jobs = self.begin(requests)
        while not all(job.done for job in jobs):
            self.step(jobs)
        return [job.result() for job in jobs]

    def begin(self, requests: list[tuple]) -> list[GenJob]:
        """Start requests (the tuples of :meth:`infer_batch`) without generating a frame:
        write each one's melody, roll its cache back and feed it. :meth:`step` then
        generates; jobs may begin while others are between steps (continuous batching),
        and a session's tokens do not depend on who else is running.

        Raises:
            StreamMuseError: a bad request (nothing of the batch began), or a session that
                already has a job running.
        """
        prepared = []
        seen: set[int] = set()
        chunks = check_chunks([req[2] for req in requests])
        for req, m_new in zip(requests, chunks):
            state, s, _, gl, *rest = req
            if id(state) in seen or getattr(state, "running", False):
                raise StreamMuseError("infer: one session has two requests running at once")
            seen.add(id(state))
            prepared.append(self._accept(state, int(s), m_new, int(gl), rest[0] if rest else None))
        with self._lock, torch.inference_mode():
            self.slots.collect()
            rows = [self._sync(state, s, gl) for state, s, gl in prepared]
            self._feed([state for state, _, _ in prepared], rows)
        for state, _, _ in prepared:
            state.running = True
        return [GenJob(state, s, gl) for state, s, gl in prepared]

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
                states, _ = self.model.global_step(torch.cat([self.model.bos_embeds(1)[0], vecs[:-1]]).unsqueeze(0))
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

    def _sync(self, state: SessionState, s: int, gl: int) -> np.ndarray:
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

    def _feed(self, states: list[SessionState], rows: list[np.ndarray]) -> None:
        """Encode rows (batched over sessions) and run the global step for every session
        that adds rows (an empty slot gets BOS first): one batched call for the sessions
        adding one row (the steady state), one padded call for the longer stretches."""
        vecs = self._encode(states, rows)
        bos = self.model.bos_embeds(1)[0]
        seqs = [vecs[i] if self.slots.lengths[st.slot] else torch.cat([bos, vecs[i]])
                for i, st in enumerate(states)]
        singles = [i for i, q in enumerate(seqs) if len(q) == 1]
        longer = [i for i, q in enumerate(seqs) if len(q) > 1]
        if singles:
            x = torch.cat([seqs[i] for i in singles]).unsqueeze(1)
            slot_ids = np.array([states[i].slot for i in singles])
            if self._graphs is not None:
                self._graphs.step(x, slot_ids)
            else:
                slot_step(self.model.global_predictor, self.slots, x, slot_ids, np.ones(len(singles), np.int64))
        if longer:
            n_new = np.array([len(seqs[i]) for i in longer])
            x = torch.nn.utils.rnn.pad_sequence([seqs[i] for i in longer], batch_first=True)
            slot_step(self.model.global_predictor, self.slots, x, np.array([states[i].slot for i in longer]), n_new)
        for st, r in zip(states, rows):
            if len(r):
                st.cache_rows = np.concatenate([st.cache_rows, r.astype(np.int16)])

    def _encode(self, states: list[SessionState], rows: list[np.ndarray]) -> list[torch.Tensor]:
        """Local encoder over every session's new rows at once -> per session ``(n, H)``."""
        parts, sizes = [], []
        for st, r in zip(states, rows):
            first = st.win_start + len(st.cache_rows)
            parts.append(np.arange(first, first + len(r)) % 2)
            sizes.append(len(r))
        if not sum(sizes):
            return [self.model.bos.new_zeros(0, self.config.hidden_size) for _ in rows]
        frames = torch.as_tensor(np.concatenate(rows).astype(np.int64), device=self.device)
        part_t = torch.as_tensor(np.concatenate(parts), device=self.device)
        return list(torch.split(self.model.encode_frames_fast(frames, part_t), sizes))

    def _draw(self, logits: torch.Tensor, states: list[SessionState]) -> torch.Tensor:
        """One token per row, from each session's own random stream."""
        samplings = [st.sampling for st in states]
        if not self.counter_rng:
            return sample_rows(logits, samplings, [st.generator for st in states]).to(self.device)
        seeds = torch.tensor([st.sampling.seed for st in states], device=self.device)
        counters = torch.tensor([st.draws for st in states], device=self.device)
        for st in states:
            st.draws += 1
        return sample_rows_counter(logits, samplings, seeds, counters)

    def _decode(self, states: list[SessionState], part: int) -> np.ndarray:
        """Sample one frame per session from its last global state (grammar-masked); the
        local decoder runs over every frame still open, of every session, at once, one
        position per token (its keys and values kept, :meth:`StreamMuseModel.decode_next`)."""
        n = len(states)
        h = self.slots.last_hidden(np.array([st.slot for st in states]))
        x = h + self.model.target_part_emb(torch.full((n,), part, device=self.device))
        last_pitch = torch.full((n,), -1, device=self.device)
        out = np.full((n, vocab.FRAME_LEN), vocab.PAD, dtype=np.int16)
        live, past = np.arange(n), None
        for j in range(vocab.FRAME_LEN):
            logits, past = self.model.decode_next(x, past, j)
            logits = grammar_mask(logits.float(), last_pitch, j, self._pitch_index)
            # Only frames still open run the decoder and draw: a session's random stream
            # must advance the same whatever its batch partners are still writing.
            tok = self._draw(logits, [states[i] for i in live])
            out[live, j] = tok_np = tok.cpu().numpy()
            open_ = tok_np != vocab.EOF
            if not open_.any():
                break
            keep = torch.as_tensor(np.flatnonzero(open_), device=self.device)
            live, tok = live[open_], tok[keep]
            if len(keep) < len(open_):
                past = [(k[keep], v[keep]) for k, v in past]
                last_pitch = last_pitch[keep]
            last_pitch = torch.where(tok >= vocab.NOTE_OFFSET, self._pitch_index[tok], last_pitch)
            x = self.model.tok_emb(tok)
        return out

    def step(self, jobs: list[GenJob]) -> None:
        """Advance every unfinished job one tick, all in one batch: A[s+i] for each; the
        jobs with more to generate then feed it, guess M[s+i] and feed that."""
        jobs = [job for job in jobs if not job.done]
        if not jobs:
            return
        with self._lock, torch.inference_mode():
            states = [job.state for job in jobs]
            acc = self._decode(states, PART_A)
            for row, job in enumerate(jobs):
                st, tick = job.state, job.tick + len(job.frames)
                job.frames.append(acc[row])
                if len(st.accompaniment) <= tick:
                    st.accompaniment = np.concatenate([st.accompaniment, empty_frames(tick + 1 - len(st.accompaniment))])
                st.accompaniment[tick] = acc[row]
                st.running = not job.done
            more = [row for row, job in enumerate(jobs) if not job.done]
            if not more:
                return
            states = [states[r] for r in more]
            self._feed(states, [acc[r : r + 1] for r in more])
            mel = self._decode(states, PART_M)
            self._feed(states, [mel[r : r + 1] for r in range(len(states))])


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
        answers = engine.infer_batch([(states[i], t, ms[i][t - 1 : t] if t else ms[i][:0], 1) for i in live])
        for i, frames in zip(live, answers):
            outs[i][t] = frames[0]
    for st in states:
        engine.release(st)
    return outs
