"""The three-module accompaniment transformer (section III-A).

* local encoder: the <= 5 tokens of one frame -> one vector (the output at its EOF
  position; the stack is causal, so EOF has seen every note of the frame);
* global predictor: causal over [BOS, InterL(M, A)] frame vectors, rotary positions;
  its output at position p conditions the frame in row p, so A[t] (row 2t) sees only
  A[<t] and M[<t];
* local decoder: [global state, tok_1, tok_2, ...] -> the frame's tokens then EOF.

All three are ``transformers`` Llama stacks fed with ``inputs_embeds``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaModel, PreTrainedModel
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from streammuse.datasets import vocab
from streammuse.model.config import StreamMuseConfig

PART_A, PART_M = 0, 1


class StreamMuseModel(PreTrainedModel):
    """Local encoder + global predictor + local decoder over interleaved frames."""

    config_class = StreamMuseConfig
    base_model_prefix = "streammuse"
    _supports_sdpa = True

    def __init__(self, config: StreamMuseConfig) -> None:
        super().__init__(config)
        h = config.hidden_size
        self.tok_emb = nn.Embedding(config.vocab_size, h)
        self.part_emb = nn.Embedding(2, h)  # which part a global input frame belongs to
        self.target_part_emb = nn.Embedding(2, h)  # which part the decoder is writing
        self.bos = nn.Parameter(torch.zeros(h))
        self.encoder = LlamaModel(config.stack_config(config.encoder_layers, config.frame_len))
        # +1 for BOS, and room to grow past W before the engine re-encodes.
        self.global_predictor = LlamaModel(config.stack_config(config.global_layers, 2 * config.max_frames + 1))
        self.decoder = LlamaModel(config.stack_config(config.decoder_layers, config.frame_len))
        self.lm_head = nn.Linear(h, config.vocab_size, bias=False)
        self.post_init()
        self._add_dropout_hooks(config)

    def _add_dropout_hooks(self, config: StreamMuseConfig) -> None:
        """Embedding and residual dropout as forward hooks (Llama layers have neither), so
        the parameters, the state dict and the inference paths stay as they are; the hooks
        drop only in train mode."""

        def hook(p: float):
            return lambda module, args, out: nn.functional.dropout(out, p, module.training)

        if config.embedding_dropout > 0:
            self.tok_emb.register_forward_hook(hook(config.embedding_dropout))
        if config.residual_dropout > 0:
            for stack in (self.encoder, self.global_predictor, self.decoder):
                for layer in stack.layers:
                    layer.self_attn.o_proj.register_forward_hook(hook(config.residual_dropout))
                    layer.mlp.down_proj.register_forward_hook(hook(config.residual_dropout))

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            nn.init.normal_(self.bos, std=self.config.initializer_range)

    # -- modules -----------------------------------------------------------------------
    def encode_frames(self, frames: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """Local encoder: frames ``(N, F)`` and their parts ``(N,)`` -> global inputs ``(N, H)``."""
        out = self.encoder(inputs_embeds=self.tok_emb(frames), use_cache=False).last_hidden_state
        eof_at = (frames == vocab.EOF).int().argmax(dim=-1)
        vec = out[torch.arange(len(frames), device=frames.device), eof_at]
        return vec + self.part_emb(parts)

    def global_step(self, inputs_embeds: torch.Tensor, cache=None) -> tuple[torch.Tensor, object]:
        """Global predictor over ``(B, P, H)`` frame vectors, continuing ``cache`` if given."""
        out = self.global_predictor(inputs_embeds=inputs_embeds, cache=cache, use_cache=cache is not None)
        return out.last_hidden_state, out.cache

    def global_step_rows(self, vecs: torch.Tensor, caches: list) -> torch.Tensor:
        """One new frame vector per session, ``(B, H)``, each continuing its own cache
        (caches of different lengths) -> the global states ``(B, H)``.

        The same layers as :meth:`global_step`, called module by module so that the
        projections and MLPs run once for the whole batch; only the cache update and the
        attention (one query over that session's keys: no mask needed) run per session.
        The engine now runs :func:`streammuse.model.batched_cache.slot_step` (all sessions'
        caches in one slot buffer, one attention call); this per-session form stays as the
        reference the tests compare with.
        """
        positions = torch.tensor([[c.get_seq_length()] for c in caches], device=vecs.device)

        def attend(li: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
            heads = []
            for i, cache in enumerate(caches):
                keys, values = cache.update(k[i : i + 1], v[i : i + 1], li)
                heads.append(nn.functional.scaled_dot_product_attention(q[i : i + 1], keys, values, scale=scale))
            return torch.cat(heads)

        return run_layers(self.global_predictor, vecs.unsqueeze(1), positions, attend)[:, 0]

    def decode_logits(self, state: torch.Tensor, target_parts: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Local decoder: global states ``(N, H)``, parts ``(N,)``, tokens so far ``(N, j)``
        -> next-token logits at every position ``(N, j+1, V)``."""
        first = (state + self.target_part_emb(target_parts)).unsqueeze(1)
        x = torch.cat([first, self.tok_emb(prefix)], dim=1)
        out = self.decoder(inputs_embeds=x, use_cache=False).last_hidden_state
        return self.lm_head(out)

    def encode_frames_fast(self, frames: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """:meth:`encode_frames` for inference, the same arithmetic on less of it: the
        layers are called module by module (:func:`run_layers`, without the stack's mask
        and output plumbing, which cost more than the arithmetic for 5-token frames); the
        stack is causal, so the positions after the last EOF are not computed; and every
        empty frame (EOF alone, most ticks of a melody or an accompaniment) has the same
        encoding, computed once per call."""
        eof_at = (frames == vocab.EOF).int().argmax(dim=-1)
        empty = frames[:1, :1].new_full((1, 1), vocab.EOF)
        out = run_layers(self.encoder, self.tok_emb(empty), torch.zeros_like(empty), attend_with_past(None, []))
        vec = out[:, 0].expand(len(frames), -1).clone()
        notes = torch.nonzero(eof_at > 0)[:, 0]
        if len(notes):
            width = int(eof_at.max()) + 1
            sub = frames[notes, :width]
            pos = torch.arange(width, device=frames.device).expand(len(sub), -1)
            out = run_layers(self.encoder, self.tok_emb(sub), pos, attend_with_past(None, [], causal=True))
            vec[notes] = out[torch.arange(len(sub), device=frames.device), eof_at[notes]]
        return vec + self.part_emb(parts)

    def decode_next(self, x: torch.Tensor, past: list | None, position: int) -> tuple[torch.Tensor, list]:
        """One position of the local decoder for ``N`` open frames: inputs ``(N, H)`` at
        ``position`` (0: the global state plus the target part, then each drawn token's
        embedding), ``past`` the keys and values of the earlier positions (None at 0).

        Returns the next-token logits ``(N, V)`` and the keys and values up to
        ``position``. The same arithmetic as :meth:`decode_logits` on the whole prefix
        (it equals that call's last position up to float rounding), in 1 instead of j + 1
        positions per token and with the vocabulary projection of the last position only.
        """
        pos = torch.full((len(x), 1), position, device=x.device)
        kept: list = []
        out = run_layers(self.decoder, x.unsqueeze(1), pos, attend_with_past(past, kept))
        return self.lm_head(out[:, 0]), kept

    def bos_embeds(self, batch: int) -> torch.Tensor:
        """The BOS frame vector, ``(batch, 1, H)``."""
        return self.bos.view(1, 1, -1).expand(batch, 1, -1)

    # -- teacher forcing ---------------------------------------------------------------
    def forward(self, rows: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """Teacher-forced logits for a window of interleaved rows.

        Args:
            rows: ``(B, R, FRAME_LEN)`` token ids; row 0 is an accompaniment frame A[t].
            labels: unused alias kept for Trainer-style calls; the rows are the labels.

        Returns:
            ``{"logits": (B, R, F, V), "loss": mean cross-entropy over non-PAD tokens}``.
        """
        b, r, f = rows.shape
        parts = (torch.arange(r, device=rows.device) % 2).expand(b, r)
        vecs = self.encode_frames(rows.reshape(b * r, f), parts.reshape(-1)).view(b, r, -1)
        g_in = torch.cat([self.bos_embeds(b).to(vecs.dtype), vecs[:, :-1]], dim=1)
        states, _ = self.global_step(g_in)
        logits = self.decode_logits(states.reshape(b * r, -1), parts.reshape(-1), rows.reshape(b * r, f)[:, : f - 1])
        logits = logits.view(b, r, f, -1)
        loss = nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), rows.reshape(-1).long(), ignore_index=vocab.PAD
        )
        return {"logits": logits, "loss": loss}


def run_layers(stack: LlamaModel, x: torch.Tensor, positions: torch.Tensor, attend) -> torch.Tensor:
    """A Llama stack's layers and final norm on ``x`` ``(B, P, H)`` at ``positions``
    ``(B, P)``, called module by module: what ``LlamaModel.forward`` computes, without its
    mask and cache objects (on small inputs that plumbing costs more than the arithmetic).

    ``attend(layer_index, q, k, v, scale)`` gives the attention output ``(B, heads, P, d)``
    of this call's rotated queries and keys: where the keys and values are kept, and what
    each query sees, is the caller's (:func:`attend_with_past`, the slot cache's step).
    """
    b, p, _ = x.shape
    cos, sin = stack.rotary_emb(x, position_ids=positions)
    for li, layer in enumerate(stack.layers[: stack.config.num_hidden_layers]):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q, k, v = (proj(h).view(b, p, -1, attn.head_dim).transpose(1, 2)
                   for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        ctx = attend(li, q, k, v, attn.scaling)
        x = x + attn.o_proj(ctx.transpose(1, 2).reshape(b, p, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return stack.norm(x)


def attend_with_past(past: list | None, kept: list, causal: bool = False):
    """An ``attend`` for :func:`run_layers` that prepends ``past[layer]`` = (keys, values) of
    earlier positions (no mask: every query of the call comes after them), appends each
    layer's keys and values to ``kept``, and with ``causal`` lets a query see only keys at
    or before it (a whole sequence in one call)."""

    def attend(li: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        if past is not None:
            k, v = torch.cat([past[li][0], k], dim=2), torch.cat([past[li][1], v], dim=2)
        kept.append((k, v))
        return nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal and q.shape[2] > 1, scale=scale)

    return attend
