"""`streammuse train` and `streammuse generate`: train the accompaniment model, accompany a melody."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streammuse.errors import StreamMuseError

_out = Console()
_err = Console(stderr=True)


def train_command(
    out: Annotated[Path, typer.Option("--out", help="Run folder (checkpoint, log, trainer state).")],
    data: Annotated[Path, typer.Option(help="POP909 folder or a cached corpus .npz.")] = Path("../shared/data/pop909"),
    config: Annotated[str, typer.Option(help="Model size: tiny or small.")] = "tiny",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/trainer_state.pt.")] = False,
    epochs: Annotated[float, typer.Option(help="Epochs (passes over the train frames).")] = 10.0,
    steps: Annotated[int, typer.Option(help="Optimizer steps; overrides --epochs when > 0.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Windows of W rows per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 200,
    checkpoint_every: Annotated[int, typer.Option(help="Save the trainer state every N steps.")] = 500,
    val_windows: Annotated[int, typer.Option(help="Per-epoch validation windows (0: all).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    min_lr_ratio: Annotated[float, typer.Option(help="Final learning rate as a fraction of the peak.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (linear weights only).")] = 0.05,
    dropout: Annotated[float, typer.Option(help="Residual dropout (attention and MLP branches).")] = 0.0,
    attention_dropout: Annotated[float, typer.Option(help="Dropout on attention weights.")] = 0.0,
    embedding_dropout: Annotated[float, typer.Option(help="Dropout on token embeddings.")] = 0.0,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the training loss.")] = 0.0,
    eval_every: Annotated[int, typer.Option(help="Validate every N steps (0: every epoch).")] = 0,
    patience: Annotated[int, typer.Option(help="Stop after N validations without a new best (0: off).")] = 0,
    time_limit: Annotated[float, typer.Option(help="Stop after this many minutes of training (0: none).")] = 0.0,
    init_from: Annotated[Path | None, typer.Option(help="Checkpoint folder whose weights start the run.")] = None,
    max_shard_size: Annotated[str, typer.Option(help="Write the model as shards of this size, e.g. 15MB.")] = "",
) -> None:
    """Train the model with teacher forcing on POP909's train split.

    It validates on the valid split on a fixed schedule; OUT keeps the best model by
    validation NLL."""
    from streammuse.model.train import TrainSettings, train

    settings = TrainSettings(config=config, data=str(data), steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                             warmup=warmup, checkpoint_every=checkpoint_every, val_windows=val_windows, seed=seed,
                             min_lr_ratio=min_lr_ratio, weight_decay=weight_decay, residual_dropout=dropout,
                             attention_dropout=attention_dropout, embedding_dropout=embedding_dropout,
                             label_smoothing=label_smoothing, eval_every=eval_every, patience=patience,
                             time_limit_s=time_limit * 60, init_from=str(init_from or ""),
                             max_shard_size=max_shard_size)
    log = train(settings, out, resume=resume, device=device)
    final = log.get("final_validation", {})
    steps_done = log["history"][-1]["step"] if log["history"] else 0
    _out.print(f"done: {steps_done} steps, best at step {final.get('step', '-')}, validation NLL "
               f"{final.get('val_nll', float('nan')):.4f} nats/token -> {out}")


def generate_command(
    melody: Annotated[Path, typer.Argument(help="A MIDI file: its 'melody' track if present, else the skyline.")],
    out: Annotated[Path, typer.Option("--out", help="Output MIDI (tracks melody + accompaniment).")],
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint folder (default: the shipped tiny).")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Top-k (0: off).")] = 0,
    top_p: Annotated[float, typer.Option(help="Top-p (1: off).")] = 0.95,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    bpm: Annotated[float | None, typer.Option(help="Tempo of the output (default: the input's first tempo).")] = None,
) -> None:
    """Offline accompaniment (the paper's offline baseline): tick by tick, full true melody.

    The output keeps the input's melody, time signatures and length; notes outside the
    piano keys (21..108) are dropped, and said so, as in every command.
    """
    from streammuse.datasets.skyline import load_melody
    from streammuse.datasets.tick_grid import song_to_midi
    from streammuse.model.engine import StreamingEngine
    from streammuse.model.generate import accompany
    from streammuse.model.sampling import Sampling

    if melody.is_dir():
        raise StreamMuseError(f"{melody}: is a folder; generate takes one MIDI file "
                              "(a folder of songs: streammuse replay FOLDER --setting offline)")
    if not melody.is_file():
        raise StreamMuseError(f"{melody}: no such file")
    if out.is_dir():
        raise StreamMuseError(f"{out}: is a folder; --out takes the name of the MIDI file to write")
    if bpm is not None and not bpm > 0:
        raise StreamMuseError(f"--bpm must be positive (got {bpm})")
    song, input_bpm = load_melody(melody)
    engine = StreamingEngine.load(checkpoint)
    result = accompany(engine, song, Sampling(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        song_to_midi(result.song, bpm=bpm or input_bpm, path=out)
    except OSError as exc:
        raise StreamMuseError(f"{out}: cannot write ({exc.strerror or exc})") from None
    _out.print(f"wrote {out} ({result.n_ticks} ticks at {bpm or input_bpm:g} BPM, model {engine.model_id})",
               highlight=False, soft_wrap=True)
    if song.notes_out_of_range:
        _err.print(f"note: {melody}: dropped {song.notes_out_of_range} notes outside the piano keys (21..108)",
                   highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `train` and `generate` to the top-level app."""
    app.command("train")(train_command)
    app.command("generate")(generate_command)
