"""Checkpoint folders: ``config.json`` + weights, read strictly.

Weights are one ``model.safetensors``, or a sharded checkpoint
(``model.safetensors.index.json`` naming ``model-0000k-of-0000n.safetensors`` shards, as
``save_pretrained(max_shard_size=...)`` writes for models too big for one file, e.g.
``small``); bf16 storage loads as fp32.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from streammuse.errors import StreamMuseError
from streammuse.model.config import StreamMuseConfig
from streammuse.model.modeling import StreamMuseModel

SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "tiny"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: the single file, else the index's shards."""
    folder = Path(folder)
    single, index = folder / WEIGHTS_FILE, folder / INDEX_FILE
    if single.is_file():
        return [single]
    if not index.is_file():
        raise StreamMuseError(f"checkpoint {folder}: {WEIGHTS_FILE} is missing (and no {INDEX_FILE})")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamMuseError(f"checkpoint {folder}: {INDEX_FILE} is not a safetensors index ({exc})") from None
    shards = [folder / name for name in sorted(set(weight_map.values()))]
    for shard in shards:
        if not shard.is_file():
            raise StreamMuseError(f"checkpoint {folder}: shard {shard.name} named in {INDEX_FILE} is missing")
    return shards


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in ``folder`` (single file or shards), as stored."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in weight_files(folder):
        try:
            state.update(load_file(str(f)))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise StreamMuseError(f"checkpoint {Path(folder)}: {f.name} is corrupt ({exc})") from None
    return state


def weights_digest(folder: str | Path) -> str:
    """A short content hash of the checkpoint's weight files (the engine's model id)."""
    h = hashlib.sha1()
    for f in weight_files(folder):
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def load_model(path: str | Path | None = None) -> StreamMuseModel:
    """Read a checkpoint folder (config + single or sharded weights) strictly, as fp32."""
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
