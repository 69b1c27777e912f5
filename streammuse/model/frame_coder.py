"""One frame per row on the device: the local decoder drawing it token by token, and the
local encoder turning it into the global predictor's input (the runner's two halves of a
frame; :mod:`streammuse.model.runner` runs the global step between them).

Two configurations, the same tokens (the draws are keyed by position, and a frame that
has ended is PAD whatever is drawn there):

* fixed shapes (CUDA): every row runs all ``FRAME_LEN`` decoder positions, the grammar
  forcing EOF at the last and PAD after EOF; the encoder runs every row's whole frame;
  nothing depends on the tokens, so the call can be captured as a graph.
* compacting (CPU, where reading a tensor costs nothing): after each position only the
  rows whose frame is still open go on, and the decoder stops when none is; the encoder
  runs only the rows that hold notes, only as far as the longest of them (the stack is
  causal: positions after EOF do not change it), and every empty frame gets the one
  encoding of an empty frame. A frame averages under two tokens, so this is most of the
  decoder's arithmetic saved.
"""

from __future__ import annotations

import numpy as np
import torch

from streammuse.datasets import vocab
from streammuse.model.attention import CacheStep, CausalAttention, SlotCache
from streammuse.model.modeling import StreamMuseModel
from streammuse.model.sampling import RowSampling, draw, pitch_rank

F = vocab.FRAME_LEN


class FrameCoder:
    """The local decoder (with its frame cache, a slot per row) and encoder of one model."""

    def __init__(self, model: StreamMuseModel, device: torch.device, dtype: torch.dtype, compact: bool) -> None:
        cfg = model.config
        self.model, self.device, self.compact = model, device, compact
        self.cache = SlotCache(cfg.decoder_layers, cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size, F,
                               device, dtype, with_hidden=False)
        self.causal = CausalAttention(cfg.num_attention_heads)
        self._rank = pitch_rank(device)  # (1, V)
        self._pitch_of = self._rank[0].clamp(-1, vocab.N_PITCHES - 1)  # notes' pitch, -1 for the rest
        self._top_rank = torch.full((1, 1), vocab.N_PITCHES, device=device)  # the last position: EOF only
        self._position = [torch.full((1,), j, device=device) for j in range(F)]
        self._rows = torch.arange(0, device=device)
        self._pad = torch.full((0, F), vocab.PAD, dtype=torch.long, device=device)
        self._empty: torch.Tensor | None = None
        self._grown = 0

    @property
    def generation(self) -> int:
        """Changes whenever a buffer a captured graph reads is reallocated."""
        return self._grown + self.cache.generation

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` rows (the frame cache, the row index)."""
        if rows > len(self._rows):
            n = 1 << (rows - 1).bit_length()
            self._rows = torch.arange(n, device=self.device)
            self._pad = torch.full((n, F), vocab.PAD, dtype=torch.long, device=self.device)
            self._grown += 1
        self.cache.reserve(rows)

    # -- decoding ----------------------------------------------------------------------
    def _position_logits(self, x: torch.Tensor, j: int, rows: torch.Tensor, read: slice | torch.Tensor) -> torch.Tensor:
        """Decoder position ``j`` on ``x`` ``(n, H)`` for the rows ``rows`` ``(n,)`` (their frame-cache slots)."""
        step = CacheStep(self.cache, read, rows, self._position[j], j + 1, None)
        return self.model.lm_head(self.model.decoder(x, step, positions=j))

    def _disallowed(self, last: torch.Tensor, j: int) -> torch.Tensor:
        """The grammar at position ``j``: notes above the frame's last pitch, or EOF; EOF alone at the end."""
        return self._rank <= (last if j < F - 1 else self._top_rank)

    def decode(self, h: torch.Tensor, part: int, u: torch.Tensor, s: RowSampling) -> torch.Tensor:
        """Draw one frame per row from its global state ``h`` ``(B, H)`` with the uniforms
        ``u`` ``(B, F)`` -> ``(B, F)`` long."""
        if self.compact:
            return self._decode_compacting(h, part, u, s)
        b = h.shape[0]
        x = h + self.model.target_part_emb.weight[part]
        rows = self._rows[:b]
        ended, last, toks = None, self._pitch_of.new_full((b, 1), -1), []
        for j in range(F):
            tok = draw(self._position_logits(x, j, rows, slice(0, b)), self._disallowed(last, j), u[:, j : j + 1], s)
            if ended is not None:
                tok = tok.masked_fill(ended, vocab.PAD)
            toks.append(tok)
            if j == F - 1:
                break
            ended = tok == vocab.EOF if ended is None else ended | (tok == vocab.EOF)
            last = torch.maximum(last, self._pitch_of[tok])
            x = self.model.tok_emb(tok).view(len(tok), -1)
        return torch.cat(toks, dim=1)

    def _decode_compacting(self, h: torch.Tensor, part: int, u: torch.Tensor, s: RowSampling) -> torch.Tensor:
        b = h.shape[0]
        x = h + self.model.target_part_emb.weight[part]
        toks, out = [], None  # the tokens of every row while all are open, then scattered into out
        rows, read, open_rows = self._rows[:b], slice(0, b), None  # None: every row is open
        last = self._pitch_of.new_full((b, 1), -1)
        for j in range(F):
            tok = draw(self._position_logits(x, j, rows, read), self._disallowed(last, j), u[:, j : j + 1], s)
            if out is None:
                toks.append(tok)
            else:
                out[open_rows, j] = tok[:, 0]
            if j == F - 1:
                break
            going = np.array(tok.tolist())[:, 0] != vocab.EOF  # a host read: free on the CPU
            if not going.any():
                break
            if not going.all():
                if out is None:
                    out = torch.full((b, F), vocab.PAD, dtype=torch.long, device=self.device)
                    out[:, : j + 1] = torch.cat(toks, dim=1)
                keep = torch.as_tensor(np.flatnonzero(going), device=self.device)
                open_rows = keep if open_rows is None else open_rows[keep]
                rows, read = open_rows, open_rows
                tok, last, u, s = tok[keep], last[keep], u[keep], s.take(keep)
            last = torch.maximum(last, self._pitch_of[tok])
            x = self.model.tok_emb(tok).view(len(tok), -1)
        if out is not None:
            return out
        return torch.cat(toks + [self._pad[:b, : F - len(toks)]], dim=1) if len(toks) < F else torch.cat(toks, dim=1)

    def teacher_logits(self, h: torch.Tensor, part: int, frames: torch.Tensor) -> torch.Tensor:
        """The decoder's logits ``(B, F, V)`` at every position of given frames ``(B, F)``,
        computed as :meth:`decode` computes them when it draws those tokens."""
        b = h.shape[0]
        self.reserve(b)
        x = h + self.model.target_part_emb.weight[part]
        out = []
        for j in range(F):
            out.append(self._position_logits(x, j, self._rows[:b], slice(0, b)))
            x = self.model.tok_emb(frames[:, j])
        return torch.stack(out, dim=1)

    # -- encoding ----------------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Local encoder: ``(N, F)`` frames -> ``(N, H)``, the output at each one's EOF (the
        global input is this plus the part's embedding)."""
        out = self.model.encoder(self.model.tok_emb(frames), self.causal)
        return (out * (frames == vocab.EOF)[:, :, None]).sum(dim=1)

    def encode_drawn(self, frames: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` of frames just drawn; compacting: only the rows with notes, only
        as far as the longest of them, the empty ones from the empty frame's encoding."""
        if not self.compact:
            return self.encode(frames)
        notes = (frames[:, 0].numpy() != vocab.EOF)
        if self._empty is None:
            empty = torch.full((1, F), vocab.PAD, dtype=torch.long, device=self.device)
            empty[0, 0] = vocab.EOF
            self._empty = self.encode(empty)
        if not notes.any():
            return self._empty.expand(len(frames), -1)
        width = int((frames.numpy() != vocab.PAD).sum(axis=1).max())
        if notes.all():
            return self.encode(frames[:, :width])
        idx = torch.as_tensor(np.flatnonzero(notes), device=self.device)
        vec = self._empty.expand(len(frames), -1).clone()
        vec[idx] = self.encode(frames[idx, :width])
        return vec
