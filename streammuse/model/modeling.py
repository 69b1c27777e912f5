"""The three-module accompaniment transformer (section III-A).

* local encoder: the <= 5 tokens of one frame -> one vector (the output at its EOF
  position; the stack is causal, so EOF has seen every note of the frame);
* global predictor: causal over [BOS, InterL(M, A)] frame vectors, rotary positions;
  its output at position p conditions the frame in row p, so A[t] (row 2t) sees only
  A[<t] and M[<t];
* local decoder: [global state, tok_1, tok_2, ...] -> the frame's tokens then EOF.

Each is a :class:`Stack` of Llama-style blocks (RMSNorm, rotary attention, SwiGLU MLP)
written here, gpt-fast style, with one forward for training and inference: what differs
is only the ``attention`` it is given (:mod:`streammuse.model.attention`): a causal
sequence, or positions written into a slot cache. The query, key and value projections
are one matrix (``qkv_proj``), as are the MLP's gate and up projections; checkpoints
written with ``transformers``' Llama layers (separate ``q_proj``, ``k_proj``, ``v_proj``,
``gate_proj``, ``up_proj``) load through a key mapping (:func:`fuse_llama_keys`), weights
unchanged. Why not ``transformers``' own modules: docs/design.md, "The model's modules".
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from streammuse.datasets import vocab
from streammuse.model.attention import CausalAttention
from streammuse.model.config import StreamMuseConfig

PART_A, PART_M = 0, 1


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (Llama's)."""

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.rms_norm(x, self.weight.shape, self.weight, self.eps)


class Rope(nn.Module):
    """Rotary positions (Llama's default rope) on a fused ``[q | k | v]`` projection.

    ``rotate_half`` of every head is a fixed permutation with signs, so a rotation is
    ``qkv * cos + qkv[..., perm] * sin`` with tables over all 3H columns (cos 1 and sin 0
    on the value columns): three kernels for q and k of every head, whatever the layout.
    """

    def __init__(self, heads: int, head_dim: int, positions: int, theta: float) -> None:
        super().__init__()
        half = head_dim // 2
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.arange(positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)  # (positions, head_dim)
        sign = torch.cat([-torch.ones(half), torch.ones(half)])
        qk_cos, qk_sin = emb.cos().repeat(1, 2 * heads), (emb.sin() * sign).repeat(1, 2 * heads)
        ones, zeros = torch.ones(positions, heads * head_dim), torch.zeros(positions, heads * head_dim)
        self.register_buffer("cos", torch.cat([qk_cos, ones], dim=-1), persistent=False)  # (positions, 3H)
        self.register_buffer("sin", torch.cat([qk_sin, zeros], dim=-1), persistent=False)
        within = torch.arange(head_dim)
        within = torch.where(within < half, within + half, within - half)
        perm = torch.cat([h * head_dim + within for h in range(2 * heads)] +
                         [torch.arange(2 * heads * head_dim, 3 * heads * head_dim)])
        self.register_buffer("perm", perm, persistent=False)

    def tables(self, positions: torch.Tensor | int | None, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for ``positions``: a ``(B, P)`` or ``(B,)`` tensor, an int (one
        position for every row), or None (positions 0 .. length-1)."""
        if positions is None:
            return self.cos[:length], self.sin[:length]
        if isinstance(positions, int):
            return self.cos[positions : positions + 1], self.sin[positions : positions + 1]
        return nn.functional.embedding(positions, self.cos), nn.functional.embedding(positions, self.sin)

    def apply(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(qkv * cos, qkv.index_select(-1, self.perm), sin)


class Attention(nn.Module):
    def __init__(self, cfg: StreamMuseConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.qkv_proj = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=False)
        self.o_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, rope: Rope, cos: torch.Tensor, sin: torch.Tensor, attention) -> torch.Tensor:
        return self.o_proj(attention(self.layer, rope.apply(self.qkv_proj(x), cos, sin)))


class MLP(nn.Module):
    def __init__(self, cfg: StreamMuseConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(nn.functional.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: StreamMuseConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)
        self.residual_dropout = cfg.residual_dropout

    def forward(self, x: torch.Tensor, rope: Rope, cos: torch.Tensor, sin: torch.Tensor, attention) -> torch.Tensor:
        a = self.self_attn(self.input_layernorm(x), rope, cos, sin, attention)
        if self.training and self.residual_dropout:
            a = nn.functional.dropout(a, self.residual_dropout, True)
        x = x + a
        m = self.mlp(self.post_attention_layernorm(x))
        if self.training and self.residual_dropout:
            m = nn.functional.dropout(m, self.residual_dropout, True)
        return x + m


class Stack(nn.Module):
    """Blocks, a final norm and the rotary tables of one module."""

    def __init__(self, cfg: StreamMuseConfig, layers: int, positions: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rope = Rope(cfg.num_attention_heads, cfg.head_dim, positions, cfg.rope_theta)

    def forward(self, x: torch.Tensor, attention, positions: torch.Tensor | int | None = None) -> torch.Tensor:
        """``x`` ``(B, P, H)`` at ``positions`` (see :meth:`Rope.tables`; None: 0 .. P-1)
        -> ``(B, P, H)``; or ``(B, H)`` at ``(B,)`` or an int, one position per row (the
        engine's steady state) -> ``(B, H)``. ``attention(layer, qkv)`` decides what each
        query sees."""
        cos, sin = self.rope.tables(positions, x.shape[1])
        for block in self.layers:
            x = block(x, self.rope, cos, sin, attention)
        return self.norm(x)


class StreamMuseModel(nn.Module):
    """Local encoder + global predictor + local decoder over interleaved frames."""

    def __init__(self, config: StreamMuseConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.tok_emb = nn.Embedding(config.vocab_size, h)
        self.part_emb = nn.Embedding(2, h)  # which part a global input frame belongs to
        self.target_part_emb = nn.Embedding(2, h)  # which part the decoder is writing
        self.bos = nn.Parameter(torch.zeros(h))
        self.encoder = Stack(config, config.encoder_layers, config.frame_len)
        # +1 for BOS, and room past W for the engine's spare positions.
        self.global_predictor = Stack(config, config.global_layers, 2 * config.max_frames + 4)
        self.decoder = Stack(config, config.decoder_layers, config.frame_len)
        self.lm_head = nn.Linear(h, config.vocab_size, bias=False)
        self._register_load_state_dict_pre_hook(fuse_llama_keys)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Llama's initialisation: normal(0, initializer_range) weights, unit norms."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
        nn.init.normal_(self.bos, std=std)

    def attention(self) -> CausalAttention:
        """The causal attention of a whole sequence (attention dropout in train mode)."""
        return CausalAttention(self.config.num_attention_heads, self.config.attention_dropout if self.training else 0.0)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.tok_emb(tokens)
        if self.training and self.config.embedding_dropout:
            e = nn.functional.dropout(e, self.config.embedding_dropout, True)
        return e

    # -- modules -----------------------------------------------------------------------
    def encode_frames(self, frames: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """Local encoder: frames ``(N, F)`` and their parts ``(N,)`` -> global inputs ``(N, H)``."""
        out = self.encoder(self.embed(frames), self.attention())
        eof_at = (frames == vocab.EOF).int().argmax(dim=-1, keepdim=True)
        vec = out.gather(1, eof_at[:, :, None].expand(-1, 1, out.shape[-1]))[:, 0]
        return vec + self.part_emb(parts)

    def global_step(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Global predictor over ``(B, P, H)`` frame vectors (a whole causal sequence)."""
        return self.global_predictor(inputs_embeds, self.attention())

    def decode_logits(self, state: torch.Tensor, target_parts: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Local decoder: global states ``(N, H)``, parts ``(N,)``, tokens so far ``(N, j)``
        -> next-token logits at every position ``(N, j+1, V)``."""
        first = (state + self.target_part_emb(target_parts)).unsqueeze(1)
        x = torch.cat([first, self.embed(prefix)], dim=1)
        return self.lm_head(self.decoder(x, self.attention()))

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
        states = self.global_step(torch.cat([self.bos_embeds(b).to(vecs.dtype), vecs[:, :-1]], dim=1))
        logits = self.decode_logits(states.reshape(b * r, -1), parts.reshape(-1), rows.reshape(b * r, f)[:, : f - 1])
        logits = logits.view(b, r, f, -1)
        loss = nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), rows.reshape(-1).long(), ignore_index=vocab.PAD
        )
        return {"logits": logits, "loss": loss}

    # -- checkpoints -------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, max_shard_size: str | int | None = None) -> None:
        """``config.json`` + ``model.safetensors`` (or shards of at most ``max_shard_size``,
        e.g. ``"15MB"``, with a ``model.safetensors.index.json``), what
        :func:`streammuse.model.checkpoint.load_model` reads."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        limit = _bytes(max_shard_size) if max_shard_size else None
        for old in list(folder.glob("model*.safetensors")) + list(folder.glob("model.safetensors.index.json")):
            old.unlink()
        if limit is None:
            save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
            return
        shards: list[dict] = [{}]
        size = 0
        for key, t in state.items():
            n = t.numel() * t.element_size()
            if shards[-1] and size + n > limit:
                shards.append({})
                size = 0
            shards[-1][key] = t
            size += n
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _bytes(size: str | int) -> int:
    """``"15MB"`` -> bytes (KB / MB / GB powers of 1000, KiB / MiB / GiB of 1024)."""
    if isinstance(size, int):
        return size
    s = size.strip().upper()
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    for unit, mult in units.items():
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mult)
    return int(s)


def fuse_llama_keys(state_dict: dict, prefix: str, *args) -> None:
    """The one-time key mapping from checkpoints written with ``transformers``' Llama
    layers: ``q_proj``, ``k_proj``, ``v_proj`` -> ``qkv_proj`` (stacked in that order),
    ``gate_proj``, ``up_proj`` -> ``gate_up_proj``; their unused ``embed_tokens`` (we feed
    embeddings) and rotary buffers are dropped. The weights themselves are unchanged."""
    for key in [k for k in state_dict if k.startswith(prefix) and k.endswith(".self_attn.q_proj.weight")]:
        base = key[: -len("q_proj.weight")]
        parts = [state_dict.pop(base + f"{n}_proj.weight") for n in "qkv"]
        state_dict[base + "qkv_proj.weight"] = torch.cat(parts)
    for key in [k for k in state_dict if k.startswith(prefix) and k.endswith(".mlp.gate_proj.weight")]:
        base = key[: -len("gate_proj.weight")]
        state_dict[base + "gate_up_proj.weight"] = torch.cat([state_dict.pop(base + "gate_proj.weight"),
                                                               state_dict.pop(base + "up_proj.weight")])
    for key in [k for k in state_dict if k.endswith(".embed_tokens.weight") or k.endswith("rotary_emb.inv_freq")]:
        del state_dict[key]
