"""Checkpoint folders: ``config.json`` + ``model.safetensors``, read strictly."""

from __future__ import annotations

import json
from pathlib import Path

from streammuse.errors import StreamMuseError
from streammuse.model.config import StreamMuseConfig
from streammuse.model.modeling import StreamMuseModel

SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "tiny"
WEIGHTS_FILE = "model.safetensors"


def load_model(path: str | Path | None = None) -> StreamMuseModel:
    """Read a checkpoint folder (``config.json`` + ``model.safetensors``) strictly."""
    from safetensors.torch import load_file

    folder = Path(path) if path is not None else SHIPPED_CHECKPOINT
    cfg_file, weights = folder / "config.json", folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise StreamMuseError(f"checkpoint {folder}: no such folder")
    for f in (cfg_file, weights):
        if not f.is_file():
            raise StreamMuseError(f"checkpoint {folder}: {f.name} is missing")
    try:
        cfg_dict = json.loads(cfg_file.read_text())
        if cfg_dict.get("model_type") != StreamMuseConfig.model_type:
            raise ValueError(f"model_type is {cfg_dict.get('model_type')!r}, not 'streammuse'")
        cfg = StreamMuseConfig.from_dict(cfg_dict)
    except (ValueError, TypeError) as exc:
        raise StreamMuseError(f"checkpoint {folder}: config.json is not a StreamMUSE config ({exc})") from None
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise StreamMuseError(f"checkpoint {folder}: {WEIGHTS_FILE} is corrupt ({exc})") from None
    model = StreamMuseModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)[:200]]
        raise StreamMuseError(f"checkpoint {folder}: config.json does not match the weights ({first[0].strip()})") from None
    return model.float().eval()
