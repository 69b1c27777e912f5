"""Model configuration: sizes of the three modules (section III-A) and the context window W."""

from __future__ import annotations

from transformers import LlamaConfig, PretrainedConfig

from streammuse.datasets import vocab
from streammuse.errors import StreamMuseError


class StreamMuseConfig(PretrainedConfig):
    """Sizes of the local encoder, global predictor and local decoder.

    All three are Llama-style stacks sharing ``hidden_size`` and ``num_attention_heads``.
    ``max_frames`` is the training window W (rows of the interleaved sequence, i.e. W/2
    ticks); at inference the global context slides so it never exceeds W rows.

    Dropout (active in train mode only): ``embedding_dropout`` on the token embeddings,
    ``attention_dropout`` on the attention weights (Llama's own), ``residual_dropout``
    on every attention and MLP branch before it is added to the residual stream.
    """

    model_type = "streammuse"

    def __init__(
        self,
        vocab_size: int = vocab.VOCAB_SIZE,
        frame_len: int = vocab.FRAME_LEN,
        hidden_size: int = 256,
        intermediate_size: int = 640,
        num_attention_heads: int = 4,
        global_layers: int = 4,
        encoder_layers: int = 1,
        decoder_layers: int = 2,
        max_frames: int = 512,
        rope_theta: float = 10000.0,
        initializer_range: float = 0.02,
        embedding_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        residual_dropout: float = 0.0,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.frame_len = frame_len
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_attention_heads = num_attention_heads
        self.global_layers = global_layers
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.max_frames = max_frames
        self.rope_theta = rope_theta
        self.initializer_range = initializer_range
        self.embedding_dropout = embedding_dropout
        self.attention_dropout = attention_dropout
        self.residual_dropout = residual_dropout
        super().__init__(**kwargs)

    @property
    def window_ticks(self) -> int:
        """W / 2: the most history a session's cache holds before its window slides."""
        return self.max_frames // 2

    @property
    def rows_kept_on_slide(self) -> int:
        """W - W/4: when a session's cache would pass W rows, the engine rebuilds it from
        this many latest rows (so a slide comes every W/4 rows)."""
        return self.max_frames - self.max_frames // 4

    @property
    def steady_context_ticks(self) -> int:
        """The history a long session's cache holds right after its window slides,
        (W - W/4) / 2 ticks, growing to W / 2 until the next slide. A request costs about
        this much a minute into a song (capacity is measured here)."""
        return self.rows_kept_on_slide // 2

    def stack_config(self, layers: int, max_positions: int) -> LlamaConfig:
        """The Llama config of one module (its token embedding is unused: we feed inputs_embeds)."""
        return LlamaConfig(
            vocab_size=1,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads,
            max_position_embeddings=max_positions,
            initializer_range=self.initializer_range,
            attention_dropout=self.attention_dropout,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
        )


PRESETS: dict[str, dict] = {
    # Runs in real time on a 2-core CPU (see docs/benchmarks.md, section Model).
    "tiny": dict(hidden_size=256, intermediate_size=640, num_attention_heads=4,
                 global_layers=4, encoder_layers=1, decoder_layers=2, max_frames=512),
    # The paper's size: about 0.12B parameters.
    "small": dict(hidden_size=768, intermediate_size=2048, num_attention_heads=12,
                  global_layers=12, encoder_layers=3, decoder_layers=3, max_frames=512),
}


def preset(name: str, **overrides) -> StreamMuseConfig:
    """The named configuration (``tiny`` or ``small``), with ``overrides`` (e.g. dropout,
    ``hidden_size``) replacing its values."""
    if name not in PRESETS:
        raise StreamMuseError(f"unknown model config {name!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(StreamMuseConfig().to_dict()))
    if unknown:
        raise StreamMuseError(f"unknown model setting(s): {', '.join(unknown)}")
    return StreamMuseConfig(**{**PRESETS[name], **overrides})
