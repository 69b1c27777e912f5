"""Training: teacher-forced cross-entropy on random windows of InterL(M, A).

Same code on CPU and GPU (bf16 autocast where CUDA is present). Regularisation: dropout
(embedding, attention, residual; :class:`~streammuse.model.config.StreamMuseConfig`),
weight decay on the linear weights only, optional label smoothing, and early stopping on
the validation NLL, evaluated every ``eval_every`` steps.

A run folder holds the *best* model so far by validation NLL (``config.json`` +
``model.safetensors``, loadable by the engine), its ``training_log.json``, and
``trainer_state.pt`` (the *latest* model, optimizer, scheduler, step, RNG) that
``--resume`` continues from.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streammuse.datasets import vocab
from streammuse.datasets.corpus import Corpus
from streammuse.datasets.frames import transpose_limits
from streammuse.errors import StreamMuseError
from streammuse.model.config import StreamMuseConfig, preset
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
    weight_decay: float = 0.05  # on linear weights only (not norms, biases, embeddings)
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    val_windows: int = 0  # validate on this many evenly spaced windows (0: the whole valid split)
    seed: int = 0
    embedding_dropout: float = 0.0
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0
    label_smoothing: float = 0.0
    eval_every: int = 0  # validation every N steps (0: every epoch)
    patience: int = 0  # stop after N validations without a new best (0: never stop early)
    time_limit_s: float = 0.0  # stop (keeping the best) after this much training time (0: none)
    init_from: str = ""  # a checkpoint folder whose weights start the run (warm start)
    model: dict = field(default_factory=dict)  # overrides of the preset's sizes, e.g. hidden_size
    max_shard_size: str = ""  # e.g. "15MB": write the model as safetensors shards + index (e.g. small)

    def model_config(self) -> StreamMuseConfig:
        """The preset with this run's dropout and size overrides."""
        return preset(self.config, embedding_dropout=self.embedding_dropout, attention_dropout=self.attention_dropout,
                      residual_dropout=self.residual_dropout, **self.model)


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
    """Non-overlapping windows of every valid song (deterministic), PAD-filled; with
    ``limit``, that many windows evenly spaced over the split (a fixed subset)."""
    wins = []
    for seq in corpus.sequences:
        for start in range(0, len(seq), window):
            w = np.zeros((window, vocab.FRAME_LEN), dtype=np.int64)
            part = seq[start : start + window]
            w[: len(part)] = part
            wins.append(w)
    wins = np.stack(wins) if wins else np.zeros((0, window, vocab.FRAME_LEN), np.int64)
    if limit and limit < len(wins):
        return wins[np.linspace(0, len(wins) - 1, limit).round().astype(int)]
    return wins


def evaluate(model: StreamMuseModel, windows: np.ndarray, batch_size: int, device: torch.device) -> dict:
    """Mean NLL per token (nats) over all tokens and over accompaniment tokens only (eval mode: no dropout)."""
    was_training = model.training
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
    model.train(was_training)
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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: the weights of linear layers decay; norms, biases, embeddings and the
    BOS vector do not."""
    decay_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    decay, no_decay = [], []
    for p in model.parameters():  # shared parameters are listed once
        (decay if id(p) in decay_ids else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def training_loss(model: StreamMuseModel, rows: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mean cross-entropy over non-PAD tokens, with label smoothing when asked."""
    out = model(rows)
    if not label_smoothing:
        return out["loss"]
    logits = out["logits"].float()
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows.reshape(-1),
                                       ignore_index=vocab.PAD, label_smoothing=label_smoothing)


class _Run:
    """The state of one training run: model, optimizer, schedule, sampler, log."""

    def __init__(self, settings: TrainSettings, out: Path, dev: torch.device, saved: dict | None) -> None:
        self.settings, self.out, self.dev = settings, out, dev
        self.cfg = settings.model_config()
        train_c, self.valid_c = load_split(settings.data, "train"), load_split(settings.data, "valid")
        self.sampler = WindowSampler(train_c, self.cfg.max_frames, settings.seed)
        self.val = validation_windows(self.valid_c, self.cfg.max_frames, settings.val_windows)
        self.steps_per_epoch = max(1, train_c.n_frames // (settings.batch_size * self.cfg.max_frames))
        self.total = settings.steps or int(settings.epochs * self.steps_per_epoch)
        self.model = StreamMuseModel(self.cfg).to(dev)
        if settings.init_from and saved is None:
            from streammuse.model.checkpoint import read_weights

            self.model.load_state_dict(read_weights(settings.init_from), strict=True)
        self.opt = torch.optim.AdamW(param_groups(self.model, settings.weight_decay), lr=settings.lr, betas=(0.9, 0.95))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(settings, self.total))
        self.step = 0
        self.log = {"settings": asdict(settings), "model_config": self.cfg.to_dict(), "history": [], "elapsed_s": 0.0,
                    "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "n_train_songs": len(train_c), "n_valid_songs": len(self.valid_c), "train_frames": train_c.n_frames,
                    "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total,
                    "parameters": sum(p.numel() for p in self.model.parameters()), "best": None, "stopped": None}
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.opt.load_state_dict(saved["optimizer"])
            self.sched.load_state_dict(saved["scheduler"])
            self.step, self.log = saved["step"], saved["log"]
            self.sampler.rng.bit_generator.state = saved["sampler_rng"]
            torch.set_rng_state(saved["torch_rng"])
        self.t0 = time.time() - self.log["elapsed_s"]

    def save_model(self) -> None:
        """The engine-loadable model files (one safetensors file, or shards with ``max_shard_size``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        kw = {"max_shard_size": self.settings.max_shard_size} if self.settings.max_shard_size else {}
        self.model.save_pretrained(self.out, **kw)

    def save_state(self) -> None:
        """Write the log and the latest trainer state; the model files too when there is no validation."""
        self.log["elapsed_s"] = time.time() - self.t0
        self.out.mkdir(parents=True, exist_ok=True)
        if not len(self.val):
            self.save_model()
        (self.out / LOG_FILE).write_text(json.dumps(self.log, indent=1))
        torch.save({"settings": asdict(self.settings), "model": self.model.state_dict(),
                    "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "step": self.step,
                    "log": self.log, "sampler_rng": self.sampler.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state()}, self.out / STATE_FILE)

    def validate(self, train_loss: float | None) -> dict:
        """One scheduled validation: log it, keep the model if it is the best so far, decide on early stopping."""
        entry = {"step": self.step, "epoch": self.step / self.steps_per_epoch, "train_loss": train_loss,
                 "lr": self.sched.get_last_lr()[0], "elapsed_s": time.time() - self.t0}
        entry.update(evaluate(self.model, self.val, self.settings.batch_size, self.dev))
        self.log["history"].append(entry)
        best = self.log["best"]
        if best is None or entry["val_nll"] < best["val_nll"]:
            self.log["best"] = {"step": self.step, "val_nll": entry["val_nll"]}
            self.save_model()
        elif self.settings.patience:
            since = sum(1 for h in self.log["history"] if h["step"] > self.log["best"]["step"])
            if since >= self.settings.patience:
                self.log["stopped"] = f"early stop at step {self.step}: {since} validations without a new best"
        return entry

    def finish(self) -> None:
        """The final figure: the whole valid split, scored with the best model."""
        if not len(self.valid_c):
            return
        best = self.log["best"]
        if best is not None and len(self.val) == len(validation_windows(self.valid_c, self.cfg.max_frames)):
            entry = next(h for h in self.log["history"] if h["step"] == best["step"])
            self.log["final_validation"] = {k: entry[k] for k in ("step", "val_nll", "val_nll_accompaniment", "val_tokens")}
            return
        if best is not None:
            from streammuse.model.checkpoint import read_weights

            self.model.load_state_dict(read_weights(self.out), strict=True)
        full = evaluate(self.model, validation_windows(self.valid_c, self.cfg.max_frames),
                        self.settings.batch_size, self.dev)
        self.log["final_validation"] = {"step": (self.log["best"] or {}).get("step", self.step), **full}


def train(settings: TrainSettings, out: str | Path, resume: bool = False, device: str | None = None,
          show_progress: bool = True, final_validation: bool = True) -> dict:
    """Train (or continue training) into ``out``; returns the training log. With
    ``final_validation`` off, a run validated on a subset skips scoring the best model on
    the whole valid split (short search runs on a CPU)."""
    out = Path(out)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    saved = None
    if resume:
        if not (out / STATE_FILE).is_file():
            raise StreamMuseError(f"--resume: {out / STATE_FILE} does not exist")
        saved = torch.load(out / STATE_FILE, map_location="cpu", weights_only=False)
        settings = TrainSettings(**saved["settings"])
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    run = _Run(settings, out, dev, saved)
    _loop(run, show_progress)
    if final_validation and "final_validation" not in run.log:
        run.finish()
        run.save_state()
    return run.log


def _loop(run: _Run, show_progress: bool) -> None:
    """Optimizer steps until the total, an early stop or the time limit."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    s, model = run.settings, run.model
    every = s.eval_every or run.steps_per_epoch
    losses: list[float] = []
    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    model.train()
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("train", total=run.total, completed=run.step, info="")
        if run.step == 0 and s.init_from and len(run.val):  # the starting point is a candidate too
            progress.console.print(json.dumps(run.validate(None)))
        while run.step < run.total and not run.log["stopped"]:
            rows = torch.as_tensor(run.sampler.batch(s.batch_size), device=run.dev)
            with _autocast(run.dev):
                loss = training_loss(model, rows, s.label_smoothing)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            run.opt.step()
            run.sched.step()
            run.step += 1
            losses.append(float(loss.detach()))
            progress.update(task, advance=1, info=f"loss {np.mean(losses[-50:]):.3f}")
            if s.time_limit_s and time.time() - run.t0 >= s.time_limit_s:
                run.log["stopped"] = f"time limit at step {run.step}"
            last = run.step == run.total or run.log["stopped"]
            if len(run.val) and (run.step % every == 0 or last):
                progress.console.print(json.dumps(run.validate(float(np.mean(losses[-every:])))))
            if last or run.step % s.checkpoint_every == 0 or run.step % every == 0:
                run.save_state()
