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
        gp = self.global_predictor
        b = len(caches)
        x = vecs.unsqueeze(1)
        positions = torch.tensor([[c.get_seq_length()] for c in caches], device=vecs.device)
        cos, sin = gp.rotary_emb(x, position_ids=positions)
        for layer in gp.layers[: gp.config.num_hidden_layers]:
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q, k, v = (proj(h).view(b, 1, -1, attn.head_dim).transpose(1, 2)
                       for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            heads = []
            for i, cache in enumerate(caches):
                keys, values = cache.update(k[i : i + 1], v[i : i + 1], attn.layer_idx)
                heads.append(nn.functional.scaled_dot_product_attention(q[i : i + 1], keys, values, scale=attn.scaling))
            x = x + attn.o_proj(torch.cat(heads).transpose(1, 2).reshape(b, 1, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return gp.norm(x)[:, 0]

    def decode_logits(self, state: torch.Tensor, target_parts: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Local decoder: global states ``(N, H)``, parts ``(N,)``, tokens so far ``(N, j)``
        -> next-token logits at every position ``(N, j+1, V)``."""
        first = (state + self.target_part_emb(target_parts)).unsqueeze(1)
        x = torch.cat([first, self.tok_emb(prefix)], dim=1)
        out = self.decoder(inputs_embeds=x, use_cache=False).last_hidden_state
        return self.lm_head(out)

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
