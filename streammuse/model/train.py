"""Training: teacher-forced cross-entropy on random windows of InterL(M, A).

Same code on CPU and GPU (bf16 autocast where CUDA is present). A run folder holds the
model (``config.json`` + ``model.safetensors``, loadable by the engine), its
``training_log.json``, and ``trainer_state.pt`` (optimizer, scheduler, step, RNG) that
``--resume`` continues from.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from streammuse.datasets import vocab
from streammuse.datasets.corpus import Corpus
from streammuse.datasets.frames import transpose_limits
from streammuse.errors import StreamMuseError
from streammuse.model.config import preset
from streammuse.model.modeling import StreamMuseModel

SHIFT_RANGE = (-5, 6)  # pitch-shift augmentation, semitones, uniform (clipped to the range)
STATE_FILE = "trainer_state.pt"
LOG_FILE = "training_log.json"


@dataclass
class TrainSettings:
    """Hyper-parameters of one training run (stored in the log and the trainer state)."""

    config: str = "tiny"
    data: str = ""
    steps: int = 0  # 0: derived from epochs
    epochs: float = 10.0
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    val_windows: int = 0  # per-epoch validation on this many windows (0: the whole valid split)
    seed: int = 0


def load_split(data: str | Path, split: str) -> Corpus:
    """A split of POP909: ``data`` is a POP909 folder (parsed and cached) or a cached corpus ``.npz``."""
    from streammuse.datasets.pop909 import load_corpus, split_of

    path = Path(data)
    if path.is_file() and path.suffix == ".npz":
        corpus = Corpus.load(path)
        return corpus.subset([sid for sid in corpus.ids if split_of(sid) == split])
    if not path.is_dir():
        raise StreamMuseError(f"training data {path}: not a POP909 folder or a corpus .npz")
    return load_corpus(path, split)


class WindowSampler:
    """Random windows of W rows starting at an A row, songs drawn in proportion to length,
    each window pitch-shifted by a uniform draw from [-5, 6] clipped to the pitch range."""

    def __init__(self, corpus: Corpus, window: int, seed: int) -> None:
        self.seqs = [s for s in corpus.sequences if len(s) >= 2]
        if not self.seqs:
            raise StreamMuseError("training data: no songs in the train split")
        lengths = np.array([len(s) for s in self.seqs], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.window = window
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> np.ndarray:
        """``(size, W, FRAME_LEN)`` int64, PAD rows after a short song's end."""
        out = np.zeros((size, self.window, vocab.FRAME_LEN), dtype=np.int64)
        for b, i in enumerate(self.rng.choice(len(self.seqs), size=size, p=self.p)):
            seq = self.seqs[i]
            start = 2 * int(self.rng.integers(0, max(1, (len(seq) - self.window) // 2 + 1)))
            win = seq[start : start + self.window].astype(np.int64)
            low, high = transpose_limits(win)
            shift = int(np.clip(self.rng.integers(SHIFT_RANGE[0], SHIFT_RANGE[1] + 1), low, high))
            notes = win >= vocab.NOTE_OFFSET
            win[notes] += shift * vocab.N_DURATIONS
            out[b, : len(win)] = win
        return out


def validation_windows(corpus: Corpus, window: int, limit: int = 0) -> np.ndarray:
    """Non-overlapping windows of every valid song (deterministic), PAD-filled."""
    wins = []
    for seq in corpus.sequences:
        for start in range(0, len(seq), window):
            w = np.zeros((window, vocab.FRAME_LEN), dtype=np.int64)
            part = seq[start : start + window]
            w[: len(part)] = part
            wins.append(w)
    wins = np.stack(wins) if wins else np.zeros((0, window, vocab.FRAME_LEN), np.int64)
    return wins[:limit] if limit else wins


def evaluate(model: StreamMuseModel, windows: np.ndarray, batch_size: int, device: torch.device) -> dict:
    """Mean NLL per token (nats) over all tokens and over accompaniment tokens only."""
    model.eval()
    tot = tot_a = 0.0
    n = n_a = 0
    with torch.inference_mode(), _autocast(device):
        for i in range(0, len(windows), batch_size):
            rows = torch.as_tensor(windows[i : i + batch_size], device=device)
            logits = model(rows)["logits"].float()
            lp = -torch.log_softmax(logits, -1).gather(-1, rows.unsqueeze(-1)).squeeze(-1)
            keep = rows != vocab.PAD
            is_a = (torch.arange(rows.shape[1], device=device) % 2 == 0).view(1, -1, 1)
            tot += float(lp[keep].sum())
            n += int(keep.sum())
            tot_a += float(lp[keep & is_a].sum())
            n_a += int((keep & is_a).sum())
    model.train()
    return {"val_nll": tot / max(n, 1), "val_nll_accompaniment": tot_a / max(n_a, 1), "val_tokens": n}


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def lr_lambda(settings: TrainSettings, total: int):
    """Linear warm-up, then cosine decay to ``min_lr_ratio``."""

    def f(step: int) -> float:
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        progress = min(1.0, (step - settings.warmup) / max(1, total - settings.warmup))
        return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def train(settings: TrainSettings, out: str | Path, resume: bool = False, device: str | None = None,
          show_progress: bool = True) -> dict:
    """Train (or continue training) into ``out``; returns the training log."""
    out = Path(out)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    state_path = out / STATE_FILE
    saved = None
    if resume:
        if not state_path.is_file():
            raise StreamMuseError(f"--resume: {state_path} does not exist")
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        settings = TrainSettings(**saved["settings"])
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    cfg = preset(settings.config)
    train_c, valid_c = load_split(settings.data, "train"), load_split(settings.data, "valid")
    sampler = WindowSampler(train_c, cfg.max_frames, settings.seed)
    val = validation_windows(valid_c, cfg.max_frames, settings.val_windows)
    steps_per_epoch = max(1, train_c.n_frames // (settings.batch_size * cfg.max_frames))
    total = settings.steps or int(settings.epochs * steps_per_epoch)

    model = StreamMuseModel(cfg).to(dev)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(settings, total))
    log = {"settings": asdict(settings), "model_config": cfg.to_dict(), "history": [], "elapsed_s": 0.0,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "n_train_songs": len(train_c), "n_valid_songs": len(valid_c),
           "train_frames": train_c.n_frames, "steps_per_epoch": steps_per_epoch, "total_steps": total}
    step = 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        step, log = saved["step"], saved["log"]
        sampler.rng.bit_generator.state = saved["sampler_rng"]
        torch.set_rng_state(saved["torch_rng"])
    model.train()
    t0 = time.time() - log["elapsed_s"]
    losses: list[float] = []

    def checkpoint() -> None:
        log["elapsed_s"] = time.time() - t0
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        (out / LOG_FILE).write_text(json.dumps(log, indent=1))
        torch.save({"settings": asdict(settings), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": step, "log": log,
                    "sampler_rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
                   state_path)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("train", total=total, completed=step, info="")
        while step < total:
            rows = torch.as_tensor(sampler.batch(settings.batch_size), device=dev)
            with _autocast(dev):
                loss = model(rows)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            progress.update(task, advance=1, info=f"loss {np.mean(losses[-50:]):.3f}")
            end_of_epoch = step % steps_per_epoch == 0 or step == total
            if end_of_epoch:
                entry = {"step": step, "epoch": step / steps_per_epoch, "train_loss": float(np.mean(losses[-steps_per_epoch:])),
                         "lr": sched.get_last_lr()[0], "elapsed_s": time.time() - t0}
                if len(val):
                    entry.update(evaluate(model, val, settings.batch_size, dev))
                log["history"].append(entry)
                progress.console.print(json.dumps(entry))
            if step == total or step % settings.checkpoint_every == 0:
                checkpoint()
    if len(valid_c) and log.get("final_validation", {}).get("step") != step:
        # Per-epoch validation may use a subset (val_windows); the final figure uses all of it.
        full = evaluate(model, validation_windows(valid_c, cfg.max_frames), settings.batch_size, dev)
        log["final_validation"] = {"step": step, **full}
        checkpoint()
    return log
