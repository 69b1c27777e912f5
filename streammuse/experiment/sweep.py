"""A sweep's configurations as Ray tasks: on the local Ray instance, or on any Ray cluster
(the KubeRay cluster ``deploy`` targets) with ``ray_address``; or as worker processes on
this machine (:func:`run_sweep_in_processes`, where Ray is not installed, e.g. a bare GPU
box), each with its engine on ``device``.

Each task runs one configuration with :func:`~streammuse.experiment.replay.run_pair` (the
same code as a sweep in this process: sim clock or offline) into a scratch folder on its
worker and returns the run folder's files; this process writes them under ``cfg.out``,
so a cluster needs no shared filesystem. An interrupted sweep resumes per configuration:
a configuration whose run folder is complete is not sent again (``--resume``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from streammuse.errors import StreamMuseError
from streammuse.experiment.config import ReplayConfig
from streammuse.runfolder import done_songs

TASK_THREADS = 1  # a small model scales poorly over threads: one task per core instead


def _run_remote(cfg: ReplayConfig, model: str | None, random_weights: bool, evaluate: bool = False,
                device: str = "cpu", cuda_graphs: bool = True) -> dict[str, bytes]:
    """Task body (a Ray task or a worker process): one configuration into a scratch folder
    (scored into its ``metrics/`` too with ``evaluate``, as ``streammuse evaluate`` does),
    its engine on ``device``; the folder's files by relative path."""
    import torch

    from streammuse.experiment.replay import load_songs, resolve_profile, run_pair
    from streammuse.model.engine import StreamingEngine

    torch.set_num_threads(TASK_THREADS)
    engine = (StreamingEngine.random("tiny", seed=cfg.seed, device=device, cuda_graphs=cuda_graphs) if random_weights
              else StreamingEngine.load(path=model, device=device, cuda_graphs=cuda_graphs))
    with tempfile.TemporaryDirectory() as scratch:
        path, _ = run_pair(replace(cfg, out=Path(scratch), resume=False), load_songs(cfg), resolve_profile(cfg),
                           engine=engine, model_id=engine.model_id)
        if evaluate:
            from streammuse.metrics.evaluate import evaluate_run

            try:
                evaluate_run(path, engine=engine)
            except Exception as exc:  # noqa: BLE001 - keep the run: the report scores it again and says why not
                print(f"scoring {path.name} failed ({type(exc).__name__}: {exc}); `streammuse report` scores it again",
                      file=sys.stderr, flush=True)
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _run_on_ray_node(cfg: ReplayConfig, model: str | None, random_weights: bool, evaluate: bool) -> dict[str, bytes]:
    """Ray task body: :func:`_run_remote`, its manifest also naming the Ray node it ran on
    (``ray_node_id``: where a configuration of a sweep on a cluster was played)."""
    import ray

    files = _run_remote(cfg, model, random_weights, evaluate)
    manifest = json.loads(files["manifest.json"])
    manifest["ray_node_id"] = ray.get_runtime_context().get_node_id()
    files["manifest.json"] = (json.dumps(manifest, indent=2, default=str) + "\n").encode()
    return files


def _write(out: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write a returned run folder under ``out`` (a fresh name if taken), manifest last."""
    target, k = out / name, 1
    while target.exists():
        k += 1
        target = out / f"{name}-{k}"
    for rel, data in sorted(files.items(), key=lambda kv: kv[0] == "manifest.json"):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return target


def _already_done(cfg: ReplayConfig, n_songs: int) -> Path | None:
    """With ``--resume``: the complete run folder of this configuration, if there is one."""
    from streammuse.experiment.replay import load_songs, resolve_profile
    from streammuse.experiment.runs import RESUME_KEYS, manifest
    from streammuse.experiment.servers import server_time_label

    if not cfg.resume:
        return None
    profile = resolve_profile(cfg)
    wanted = json.loads(json.dumps(manifest(cfg, profile, load_songs(cfg), "", server_time_label(cfg, profile)), default=str))
    for path in sorted(Path(cfg.out).glob("*/manifest.json")):
        saved = json.loads(path.read_text())
        same = all(saved.get(k) == wanted.get(k) for k in RESUME_KEYS if k != "model_id")
        if same and len(done_songs(path.parent)) >= n_songs:
            return path.parent
    return None


def run_sweep_on_ray(configs: list[ReplayConfig], n_songs: int, model: str | None = None, random_weights: bool = False,
                     ray_address: str | None = None, on_done: Callable[[ReplayConfig, Path], None] | None = None,
                     evaluate: bool = False) -> list[Path]:
    """Run ``configs`` (sim clock or offline) as Ray tasks; their run folders, in order.
    With ``evaluate`` each task also scores its run (the report then only reads them)."""
    import ray

    if any(c.clock == "wall" and c.setting != "offline" for c in configs):
        raise StreamMuseError("--ray runs sim-clock or offline configurations; a wall-clock replay needs its server")
    started_here = not ray.is_initialized()
    if started_here:
        from streammuse.serving.raylocal import init_quietly

        try:
            init_quietly(ray_address, None if ray_address else os.cpu_count())
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise StreamMuseError(f"cannot reach the Ray cluster {ray_address or '(local)'}: {exc}") from None
    try:
        task = ray.remote(num_cpus=TASK_THREADS)(_run_on_ray_node)

        def finished(pending: dict) -> Iterator[tuple[object, dict[str, bytes]]]:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                yield ready[0], ray.get(ready[0])

        return _gather(configs, n_songs, lambda cfg: task.remote(cfg, model, random_weights, evaluate), finished, on_done)
    finally:
        if started_here:
            ray.shutdown()


def run_sweep_in_processes(configs: list[ReplayConfig], n_songs: int, workers: int, model: str | None = None,
                           random_weights: bool = False, device: str = "cpu", cuda_graphs: bool = True,
                           on_done: Callable[[ReplayConfig, Path], None] | None = None,
                           evaluate: bool = False) -> list[Path]:
    """Run ``configs`` (sim clock or offline) in ``workers`` processes on this machine, the
    same task body as on Ray, each engine on ``device`` (``cuda``: the workers share the
    GPU; ``cuda_graphs`` False: the eager step); their run folders, in order. Resumes per
    configuration like the Ray sweep."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if any(c.clock == "wall" and c.setting != "offline" for c in configs):
        raise StreamMuseError("a sweep in processes runs sim-clock or offline configurations")
    if workers < 1:
        raise StreamMuseError(f"--workers must be at least 1 (got {workers})")
    # spawn, not fork: a forked child cannot initialise CUDA, and it must not inherit our threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:

        def finished(pending: dict) -> Iterator[tuple[object, dict[str, bytes]]]:
            for future in as_completed(list(pending)):
                yield future, future.result()

        def submit(cfg: ReplayConfig) -> object:
            return pool.submit(_run_remote, cfg, model, random_weights, evaluate, device, cuda_graphs)

        return _gather(configs, n_songs, submit, finished, on_done)


def _gather(configs: list[ReplayConfig], n_songs: int, submit: Callable[[ReplayConfig], object],
            finished: Callable[[dict], Iterator[tuple[object, dict[str, bytes]]]],
            on_done: Callable[[ReplayConfig, Path], None] | None) -> list[Path]:
    """Submit every configuration not already done (``--resume``), write each run folder as
    its task finishes (``finished`` yields ``(handle, files)`` while ``pending`` is not
    empty; each yielded handle is popped from it here); the folders, in order."""
    paths: dict[int, Path] = {}
    pending: dict[object, int] = {}
    for k, cfg in enumerate(configs):
        done = _already_done(cfg, n_songs)
        if done is not None:
            paths[k] = done
            if on_done is not None:
                on_done(cfg, done)
        else:
            pending[submit(cfg)] = k
    for handle, files in finished(pending):
        k = pending.pop(handle)
        paths[k] = _write(Path(configs[k].out), _name(configs[k]), files)
        if on_done is not None:
            on_done(configs[k], paths[k])
    return [paths[k] for k in range(len(configs))]


def _name(cfg: ReplayConfig) -> str:
    from streammuse.experiment.runs import run_name

    offline = cfg.setting == "offline"
    return run_name(cfg.setting, 1 if offline else cfg.interval, 1 if offline else cfg.gen_len)
