"""Model configuration: sizes of the three modules (section III-A) and the context window W.

A plain dataclass, stored as the checkpoint's ``config.json`` (the keys a
``transformers`` ``save_pretrained`` wrote for earlier checkpoints, such as
``architectures`` or ``transformers_version``, are read and ignored), so loading a model
imports neither ``transformers`` nor its hub machinery (docs/design.md, "The model's
modules").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from streammuse.datasets import vocab
from streammuse.errors import StreamMuseError

# What earlier checkpoints' config.json held besides the sizes (written by transformers).
_IGNORED_KEYS = {"architectures", "dtype", "torch_dtype", "transformers_version", "model_type"}


@dataclass
class StreamMuseConfig:
    """Sizes of the local encoder, global predictor and local decoder.

    All three are Llama-style stacks (RMSNorm, rotary positions, SwiGLU MLP) sharing
    ``hidden_size`` and ``num_attention_heads``. ``max_frames`` is the training window W
    (rows of the interleaved sequence, i.e. W/2 ticks); at inference the global context
    slides so it never exceeds W rows.

    Dropout (active in train mode only): ``embedding_dropout`` on the token embeddings,
    ``attention_dropout`` on the attention weights, ``residual_dropout`` on every attention
    and MLP branch before it is added to the residual stream.
    """

    vocab_size: int = vocab.VOCAB_SIZE
    frame_len: int = vocab.FRAME_LEN
    hidden_size: int = 256
    intermediate_size: int = 640
    num_attention_heads: int = 4
    global_layers: int = 4
    encoder_layers: int = 1
    decoder_layers: int = 2
    max_frames: int = 512
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    embedding_dropout: float = 0.0
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0

    model_type = "streammuse"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 2:
            raise StreamMuseError(f"hidden_size {self.hidden_size} must split into {self.num_attention_heads} heads "
                                  "of an even size")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

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

    def to_dict(self) -> dict:
        """The sizes (``StreamMuseConfig(**d)`` rebuilds it; ``config.json`` adds ``model_type``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StreamMuseConfig":
        """A config from ``config.json``'s dict; unknown keys are an error (a typo or
        another model), transformers' bookkeeping keys are ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - _IGNORED_KEYS)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` into ``folder``."""
        data = {"model_type": self.model_type, **self.to_dict()}
        (Path(folder) / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


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
    unknown = sorted(set(overrides) - {f.name for f in fields(StreamMuseConfig)})
    if unknown:
        raise StreamMuseError(f"unknown model setting(s): {', '.join(unknown)}")
    return StreamMuseConfig(**{**PRESETS[name], **overrides})
