"""The streaming engine (docs/design.md section 2): sessions, rollback, sliding window.

A session is the paper's interleaved sequence InterL(M, A) (section III-B) as far as the
engine knows it: the true melody the client sent, the accompaniment the engine generated
(the latest generation for each tick), and the global predictor's KV cache over
[BOS, rows win_start .. ). A request at tick s with gen_len GL:

1. appends the true melody for ticks up to s (a gap in the accompaniment before s
   becomes empty frames; the melody the engine had guessed is replaced by the truth);
2. rolls the cache back (``Cache.crop``) to the longest prefix of rows that is still
   what the session now says, and feeds the rest;
3. generates A[s], M[s] (a guess), A[s+1], ..., A[s+GL-1]: 2*GL - 1 frames (the final
   melody guess is never used, so it is not generated) and returns the GL A frames.

The context is bounded: when the cache would pass W = ``max_frames`` rows it is rebuilt
from the last W - W/4 rows, so a request costs the same at tick 64 or tick 10 000.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import DynamicCache

from streammuse.contract import MAX_GEN_LEN  # C: no generation is longer
from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames, interleave
from streammuse.errors import StreamMuseError
from streammuse.model.checkpoint import read_weights, weights_digest
from streammuse.model.config import StreamMuseConfig, preset
from streammuse.model.modeling import PART_A, PART_M, StreamMuseModel
from streammuse.model.sampling import Sampling, grammar_mask, note_pitch_index, sample_rows

SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "tiny"


@dataclass
class SessionState:
    """One session's history and cache (see the module docstring)."""

    sampling: Sampling
    generator: torch.Generator
    melody: np.ndarray
    accompaniment: np.ndarray
    cache: DynamicCache | None = None
    cache_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, vocab.FRAME_LEN), np.int16))
    win_start: int = 0  # absolute row of the first cached row after BOS (always even)
    hidden: torch.Tensor | None = None  # global outputs, one per cache position (BOS first)
    requests: int = 0


def check_frames(frames, name: str) -> np.ndarray:
    """``frames`` as int16 ``(k, FRAME_LEN)`` if every row is a valid frame, else StreamMuseError.

    Valid: note tokens in strictly ascending pitch, then EOF, then PAD.
    """
    arr = np.asarray(frames)
    if arr.ndim != 2 or arr.shape[1] != vocab.FRAME_LEN or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise StreamMuseError(f"{name}: expected integer frames of shape (n, {vocab.FRAME_LEN}), got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab.VOCAB_SIZE):
        bad = arr[(arr < 0) | (arr >= vocab.VOCAB_SIZE)][0]
        raise StreamMuseError(f"{name}: token {bad} outside the vocabulary [0, {vocab.VOCAB_SIZE}) (pitch out of range?)")
    is_note = arr >= vocab.NOTE_OFFSET
    n_notes = np.cumprod(is_note, axis=1).sum(axis=1)
    rows = np.arange(len(arr))
    ok = arr[rows, np.minimum(n_notes, vocab.FRAME_LEN - 1)] == vocab.EOF
    ok &= n_notes < vocab.FRAME_LEN
    after = np.arange(vocab.FRAME_LEN)[None, :] > n_notes[:, None]
    ok &= ~np.any(after & (arr != vocab.PAD), axis=1)
    pitch = np.where(is_note, (arr - vocab.NOTE_OFFSET) // vocab.N_DURATIONS, 10**6)
    ascending = np.diff(pitch, axis=1) > 0
    ok &= ~np.any(~ascending & (np.arange(vocab.FRAME_LEN - 1)[None, :] < n_notes[:, None] - 1), axis=1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise StreamMuseError(f"{name}: row {i} {arr[i].tolist()} is not a frame (notes in ascending pitch, EOF, PAD)")
    return arr.astype(np.int16)


class StreamingEngine:
    """Frame-synchronous streaming inference over one :class:`StreamMuseModel`."""

    def __init__(self, model: StreamMuseModel, device: str | torch.device = "cpu", model_id: str = "streammuse") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config: StreamMuseConfig = model.config
        self.model_id = model_id
        self._pitch_index = note_pitch_index(self.device)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> "StreamingEngine":
        """The engine over the checkpoint folder ``path`` (None: the shipped ``tiny``)."""
        model = load_model(path)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise StreamMuseError(f"device {device!r} asked for, but no CUDA GPU is available")
        folder = Path(path) if path is not None else SHIPPED_CHECKPOINT
        return cls(model, device, model_id=f"{folder.name}-{weights_digest(folder)}")

    @classmethod
    def random(cls, config: str | StreamMuseConfig = "tiny", seed: int = 0, device: str = "cpu") -> "StreamingEngine":
        """An engine over random weights (tests, benchmarks of speed alone)."""
        cfg = preset(config) if isinstance(config, str) else config
        torch.manual_seed(seed)
        return cls(StreamMuseModel(cfg), device, model_id=f"random-{seed}")

    def new_session(self, sampling: Sampling | None = None) -> SessionState:
        """A fresh session: no melody, no accompaniment, an empty cache."""
        sampling = sampling or Sampling()
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(sampling.seed))
        return SessionState(sampling, gen, empty_frames(0), empty_frames(0))

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

        The local encoder and decoder run batched across sessions, and so does every
        global predictor step that adds one frame per session (each still attends over its
        own cache); a session's output is the same whatever else is in the batch.
        """
        prepared = []
        seen: set[int] = set()
        for req in requests:
            state, s, m_new, gl, *rest = req
            if id(state) in seen:
                raise StreamMuseError("infer_batch: one session appears twice in the batch")
            seen.add(id(state))
            prepared.append(self._accept(state, int(s), m_new, int(gl), rest[0] if rest else None))
        with torch.inference_mode():
            todo = [(state, self._sync(state, s, gl)) for state, s, gl in prepared]
            todo = [(state, rows) for state, rows in todo if len(rows)]
            if todo:  # one batched step in the steady state (one true melody row each)
                self._feed([st for st, _ in todo], [rows for _, rows in todo])
            return self._generate([(st, s, gl) for st, s, gl in prepared])

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
        state.cache, state.hidden, state.win_start = None, None, 0
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
    def _accept(self, state: SessionState, s: int, m_new, gl: int, melody_start: int | None):
        """Validate a request and write its melody into the session's history."""
        if not isinstance(state, SessionState):
            raise StreamMuseError("infer: state must come from new_session()")
        if not 1 <= gl <= MAX_GEN_LEN:
            raise StreamMuseError(f"gen_len must be in 1..{MAX_GEN_LEN}, got {gl}")
        if s < 0:
            raise StreamMuseError(f"request_tick must be >= 0, got {s}")
        m_new = check_frames(m_new if len(m_new) else empty_frames(0), "melody_frames")
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
        state.cache = DynamicCache()
        state.win_start = win_start
        state.cache_rows = empty_frames(0)
        state.hidden, _ = self.model.global_step(self.model.bos_embeds(1), state.cache)
        state.hidden = state.hidden[0]

    def _sync(self, state: SessionState, s: int, gl: int) -> np.ndarray:
        """Roll the cache back to what is still true and slide the window; returns the
        rows < 2s still to feed."""
        w = self.config.max_frames
        end = 2 * s + 2 * gl - 2  # rows in the cache once this request is generated
        if state.cache is None or end - state.win_start > w or 2 * s < state.win_start:
            slack = w // 4
            win = max(0, end - (w - slack))
            self._reset_cache(state, win + (win % 2))
        desired = interleave(state.melody[:s], state.accompaniment[:s])[state.win_start :]
        n = min(len(desired), len(state.cache_rows))
        same = np.all(desired[:n] == state.cache_rows[:n], axis=1)
        keep = n if same.all() else int(np.argmin(same))
        if keep < len(state.cache_rows):
            # A negative count removes that many positions (the form every transformers 5.x takes).
            state.cache.crop(-(len(state.cache_rows) - keep))
            state.hidden = state.hidden[: 1 + keep]
            state.cache_rows = state.cache_rows[:keep]
        return desired[keep:]

    def _feed(self, states: list[SessionState], rows: list[np.ndarray]) -> None:
        """Encode rows (batched over sessions) and run each session's global step."""
        parts, offsets = [], [0]
        for st, r in zip(states, rows):
            first = st.win_start + len(st.cache_rows)
            parts.append((np.arange(first, first + len(r)) % 2))
            offsets.append(offsets[-1] + len(r))
        frames = torch.as_tensor(np.concatenate(rows).astype(np.int64), device=self.device)
        part_t = torch.as_tensor(np.concatenate(parts), device=self.device)
        vecs = self.model.encode_frames(frames, part_t)
        hidden: dict[int, torch.Tensor] = {}
        # Sessions adding one row (the generation loop, the steady state of requests) share
        # one batched step; longer stretches (a new session, a rebuild) run on their own.
        singles = [i for i, r in enumerate(rows) if len(r) == 1]
        if singles:
            h = self.model.global_step_rows(vecs[[offsets[i] for i in singles]], [states[i].cache for i in singles])
            hidden.update((i, h[k : k + 1]) for k, i in enumerate(singles))
        for i, r in enumerate(rows):
            if i not in hidden:
                hidden[i] = self.model.global_step(vecs[offsets[i] : offsets[i + 1]].unsqueeze(0), states[i].cache)[0][0]
        for i, (st, r) in enumerate(zip(states, rows)):
            st.hidden = torch.cat([st.hidden, hidden[i]])
            st.cache_rows = np.concatenate([st.cache_rows, r.astype(np.int16)])

    def _decode(self, states: list[SessionState], part: int) -> np.ndarray:
        """Sample one frame per session from its last global state (grammar-masked)."""
        n = len(states)
        h = torch.stack([st.hidden[-1] for st in states])
        parts = torch.full((n,), part, device=self.device)
        prefix = torch.zeros((n, 0), dtype=torch.long, device=self.device)
        last_pitch = torch.full((n,), -1, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        out = np.full((n, vocab.FRAME_LEN), vocab.PAD, dtype=np.int16)
        for j in range(vocab.FRAME_LEN):
            logits = self.model.decode_logits(h, parts, prefix)[:, -1].float()
            logits = grammar_mask(logits, last_pitch, j, self._pitch_index)
            # Draw only for frames still open: a session's generator must advance the same
            # whatever its batch partners are still writing.
            live = [i for i in range(n) if not done[i]]
            tok = torch.full((n,), vocab.PAD, dtype=torch.long, device=self.device)
            tok[live] = sample_rows(logits[live], [states[i].sampling for i in live],
                                    [states[i].generator for i in live]).to(self.device)
            out[:, j] = tok.cpu().numpy()
            done |= tok == vocab.EOF
            if bool(done.all()):
                break
            last_pitch = torch.where(tok >= vocab.NOTE_OFFSET, self._pitch_index[tok], last_pitch)
            prefix = torch.cat([prefix, tok.unsqueeze(1)], dim=1)
        return out

    def _generate(self, jobs: list[tuple[SessionState, int, int]]) -> list[np.ndarray]:
        """A[s], M[s], ..., A[s+GL-1] in lockstep across sessions."""
        results: list[list[np.ndarray]] = [[] for _ in jobs]
        for i in range(max(gl for _, _, gl in jobs)):
            active = [k for k, (_, _, gl) in enumerate(jobs) if i < gl]
            states = [jobs[k][0] for k in active]
            acc = self._decode(states, PART_A)
            for row, k in enumerate(active):
                st, s, _ = jobs[k]
                results[k].append(acc[row])
                tick = s + i
                if len(st.accompaniment) <= tick:
                    st.accompaniment = np.concatenate([st.accompaniment, empty_frames(tick + 1 - len(st.accompaniment))])
                st.accompaniment[tick] = acc[row]
            more = [row for row, k in enumerate(active) if i + 1 < jobs[k][2]]
            if not more:
                continue
            states = [states[r] for r in more]
            self._feed(states, [acc[r : r + 1] for r in more])
            mel = self._decode(states, PART_M)
            self._feed(states, [mel[r : r + 1] for r in range(len(states))])
        return [np.stack(r) for r in results]


def generate_offline(engine: StreamingEngine, melody_frames, sampling: Sampling | None = None) -> np.ndarray:
    """The paper's offline baseline: tick by tick (I = 1, GL = 1) with the full true
    melody history and no latency. Returns ``(T, FRAME_LEN)`` accompaniment frames."""
    m = check_frames(melody_frames, "melody_frames")
    state = engine.new_session(sampling)
    out = np.empty_like(m)
    for t in range(len(m)):
        out[t] = engine.infer(state, t, m[t - 1 : t] if t else m[:0], 1)[0]
    return out


def load_model(path: str | Path | None = None) -> StreamMuseModel:
    """Read a checkpoint folder (``config.json`` + ``model.safetensors``, or a sharded
    ``model.safetensors.index.json`` + shards) strictly, as fp32."""
    folder = Path(path) if path is not None else SHIPPED_CHECKPOINT
    cfg_file = folder / "config.json"
    if not folder.is_dir():
        raise StreamMuseError(f"checkpoint {folder}: no such folder")
    if not cfg_file.is_file():
        raise StreamMuseError(f"checkpoint {folder}: config.json is missing")
    try:
        cfg_dict = json.loads(cfg_file.read_text())
        if cfg_dict.get("model_type") != StreamMuseConfig.model_type:
            raise ValueError(f"model_type is {cfg_dict.get('model_type')!r}, not 'streammuse'")
        cfg = StreamMuseConfig.from_dict(cfg_dict)
    except (ValueError, TypeError) as exc:
        raise StreamMuseError(f"checkpoint {folder}: config.json is not a StreamMUSE config ({exc})") from None
    state = read_weights(folder)
    model = StreamMuseModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)[:200]]
        raise StreamMuseError(f"checkpoint {folder}: config.json does not match the weights ({first[0].strip()})") from None
    return model.float().eval()
