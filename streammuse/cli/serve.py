"""`streammuse serve` and `streammuse deploy`: run the Serve app locally or on Kubernetes."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streammuse.contract import MAX_BPM, MAX_GEN_LEN, MIN_BPM
from streammuse.errors import StreamMuseError
from streammuse.serving.app import TOKEN_ENV, DeployOptions

_console = Console()


def _options(min_replicas: int, max_replicas: int, num_gpus: float, num_cpus: float, checkpoint: Path | None,
             **fields) -> DeployOptions:
    """DeployOptions from the flags (``fields``: the DeployOptions fields named alike)."""
    if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
        raise StreamMuseError(f"--min-replicas/--max-replicas: need 0 <= min <= max and max >= 1, got {min_replicas}/{max_replicas}")
    if checkpoint is not None and not checkpoint.is_dir():
        raise StreamMuseError(f"--checkpoint: {checkpoint} is not a folder")
    if fields["max_sessions"] < 0 or (fields["max_sessions_per_client"] or 0) < 0:
        raise StreamMuseError("--max-sessions/--max-sessions-per-client: need >= 0")
    if fields["plan_interval"] < 1 or not 1 <= fields["plan_gen_len"] <= MAX_GEN_LEN or not MIN_BPM <= fields["plan_bpm"] <= MAX_BPM:
        raise StreamMuseError(f"--plan-interval >= 1, --plan-gen-len in 1..{MAX_GEN_LEN}, --plan-bpm in {MIN_BPM:g}..{MAX_BPM:g}")
    return DeployOptions(min_replicas=min_replicas, max_replicas=max_replicas, num_gpus=num_gpus, num_cpus=num_cpus,
                         checkpoint=str(checkpoint) if checkpoint else None, **fields)


def measure_here(options: DeployOptions) -> None:
    """Size a replica on this host (``max_sessions`` 0): load its engine with its thread
    budget, measure T(B), set ``max_sessions`` to B* (serving/capacity.py) and print it."""
    import torch

    from streammuse.serving.app import create_app, load_engine
    from streammuse.serving.capacity import ladder, sessions_for
    from streammuse.serving.capacity_probe import measure_step_ms

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(options.num_cpus)))  # what a replica with num_cpus gets
    try:
        with _console.status("measuring a replica's batched step time ..."):
            engine = load_engine(options)
            table = measure_step_ms(engine, options.plan(), ladder(options.max_batch_size), create_app)
    finally:
        torch.set_num_threads(threads)
    options.max_sessions = sessions_for(table, options.plan(), options.max_batch_size)
    steps = ", ".join(f"T({b})={ms:.0f}" for b, ms in table.items())
    _console.print(f"capacity: {options.max_sessions} sessions per replica at I={options.plan_interval}, "
                   f"GL={options.plan_gen_len}, {options.plan_bpm:g} BPM (ms: {steps})", markup=False, highlight=False)


def start_sized(options: DeployOptions, port: int | None, host: str, address: str | None = None) -> str:
    """Start the app on local Ray; its URL. ``max_sessions`` 0: size a replica here
    (:func:`measure_here`), then, with one replica up, offer it sessions through the whole
    HTTP path and restart it with the most that play in real time
    (serving/path_probe.py: the app-path figure leaves out Ray's proxy and the clients)."""
    from dataclasses import replace

    from streammuse.serving.path_probe import MIN_TICK_SHARE, size_through_path
    from streammuse.serving.raylocal import redeploy, start_local

    probe = options.max_sessions == 0 and options.min_replicas == 1
    if options.max_sessions == 0:
        measure_here(options)
    # The probe's sessions all come from this host: no per-client bound while it runs.
    first = replace(options, max_sessions_per_client=0) if probe else options
    with _console.status("starting Ray and the Serve app ..."):
        url = start_local(vars(first), port=port, host=host, address=address)
    if not probe:
        return url

    def tried(n: int, figures: dict) -> None:
        _console.print(f"  {n} sessions: the worst plays {figures['tick_share_min'] or 0:.1%} of its ticks "
                       f"(answers p95 {figures['wait_p95_ms']:.0f} ms)", markup=False, highlight=False)

    with _console.status("offering sessions through the HTTP path ..."):
        n = size_through_path(url.replace("0.0.0.0", "127.0.0.1"), options.plan(), options.max_sessions, tried,
                              token=os.environ.get(TOKEN_ENV) or None)
    _console.print(f"capacity through the HTTP path: {n} sessions per replica (every one plays >= "
                   f"{MIN_TICK_SHARE:.0%} of its ticks)", markup=False, highlight=False)
    options.max_sessions = n
    with _console.status("restarting the Serve app with it ..."):
        redeploy(vars(options), url)
    return url


MinR = Annotated[int, typer.Option("--min-replicas", help="Fewest replicas (autoscaling).")]
MaxR = Annotated[int, typer.Option("--max-replicas", help="Most replicas (autoscaling).")]
Target = Annotated[float | None, typer.Option("--target-ongoing-requests", help="Ray Serve's ongoing-requests target per replica (default from the capacity); replicas scale on sessions (docs/deploy.md, Autoscaling).")]
Cpus = Annotated[float, typer.Option("--num-cpus", help="CPUs per replica.")]
Ckpt = Annotated[Path | None, typer.Option(help="Checkpoint folder; default: the shipped one.")]
Ttl = Annotated[float, typer.Option("--session-ttl", help="Seconds before an idle session is dropped.")]
MaxS = Annotated[int, typer.Option("--max-sessions", help="Sessions one replica carries; 0: measured (docs/deploy.md).")]
PerClient = Annotated[int | None, typer.Option(
    "--max-sessions-per-client", help="Sessions one client (remote address) holds on a replica; default half of the capacity (at least 4), 0: no bound.")]
PlanBpm = Annotated[float, typer.Option("--plan-bpm", help="Capacity plan: the sessions' tempo.")]
PlanI = Annotated[int, typer.Option("--plan-interval", help="Capacity plan: the sessions' inference interval I.")]
PlanGL = Annotated[int, typer.Option("--plan-gen-len", help="Capacity plan: the sessions' generation length GL.")]


def serve(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    min_replicas: MinR = 1, max_replicas: MaxR = 1, target_ongoing_requests: Target = None,
    num_gpus: Annotated[float, typer.Option("--num-gpus", help="GPUs per replica (0: CPU only).")] = 0.0,
    num_cpus: Cpus = 1.0, checkpoint: Ckpt = None, session_ttl: Ttl = 600.0, max_sessions: MaxS = 0,
    max_sessions_per_client: PerClient = None, plan_bpm: PlanBpm = 120.0, plan_interval: PlanI = 1, plan_gen_len: PlanGL = 3,
) -> None:
    """Start the StreamMUSE server on a local Ray instance; Ctrl-C stops it."""
    from streammuse.serving.raylocal import check_port_free, logs_dir, stop_local

    options = _options(min_replicas, max_replicas, num_gpus, num_cpus, checkpoint, target_ongoing_requests=target_ongoing_requests,
                       session_ttl_s=session_ttl, max_sessions=max_sessions, max_sessions_per_client=max_sessions_per_client,
                       plan_bpm=plan_bpm, plan_interval=plan_interval, plan_gen_len=plan_gen_len)
    check_port_free(host, port)  # before minutes of measuring and starting Ray
    url = start_sized(options, port, host)
    _console.print(f"StreamMUSE serving at [bold]{url}[/] (API docs {url}/docs); Ctrl-C stops")
    _console.print(f"Ray's logs: {logs_dir() or '-'}", markup=False, highlight=False, soft_wrap=True)
    stop = threading.Event()
    # Both set explicitly: a shell starting us in the background ignores SIGINT, and then
    # Python would never raise KeyboardInterrupt.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        with _console.status("stopping ..."):
            stop_local()
        _console.print("stopped")


def deploy(
    cluster: Annotated[str, typer.Option(help="'local' (detached Ray on this host) or 'k8s' (KubeRay RayService).")] = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="k8s: write the YAML only, apply nothing.")] = False,
    image: Annotated[str | None, typer.Option(
        help="k8s: container image you built and pushed (docs/deploy.md); required to apply.")] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="k8s: where rayservice.yaml is written.")] = Path("streammuse-k8s"),
    cpu_only: Annotated[bool, typer.Option("--cpu-only", help="k8s: no GPUs (replicas on CPU workers).")] = False,
    port: Annotated[int, typer.Option(help="local: HTTP port.")] = 8000,
    min_replicas: MinR = 1, max_replicas: MaxR = 4, target_ongoing_requests: Target = None,
    num_cpus: Cpus = 1.0, checkpoint: Ckpt = None, session_ttl: Ttl = 600.0, max_sessions: MaxS = 0,
    max_sessions_per_client: PerClient = None, plan_bpm: PlanBpm = 120.0, plan_interval: PlanI = 1, plan_gen_len: PlanGL = 3,
) -> None:
    """Deploy the server: detached on a local Ray instance, or as a RayService on Kubernetes."""
    fields = {"target_ongoing_requests": target_ongoing_requests, "session_ttl_s": session_ttl, "max_sessions": max_sessions,
              "max_sessions_per_client": max_sessions_per_client, "plan_bpm": plan_bpm, "plan_interval": plan_interval,
              "plan_gen_len": plan_gen_len}
    if cluster == "local":
        options = _options(min_replicas, max_replicas, 0.0, num_cpus, checkpoint, **fields)
        _deploy_local(options, port)
        return
    if cluster != "k8s":
        raise StreamMuseError(f"--cluster: unknown cluster {cluster!r} (expected 'local' or 'k8s')")
    from streammuse.serving import k8s

    # max_sessions 0: each replica measures its own at start, on its own device.
    options = _options(min_replicas, max_replicas, 0.0 if cpu_only else 1.0, num_cpus, None, **fields)
    if checkpoint is not None:
        options.checkpoint = str(checkpoint)  # a path inside the image or a mounted volume
    if not dry_run and not image:
        raise StreamMuseError("--image is required to apply: no image is published; build and push one "
                              "(docs/deploy.md), or render with --dry-run to see the manifest")
    path = k8s.write_manifest(k8s.render_rayservice(options, image=image or k8s.PLACEHOLDER_IMAGE), out_dir)
    _console.print(f"wrote {path}" + ("" if image else f" (image: the placeholder {k8s.PLACEHOLDER_IMAGE}; pass --image)"),
                   markup=False, highlight=False)
    if not dry_run:
        _console.print(k8s.apply_manifest(path))


def _deploy_local(options: DeployOptions, port: int) -> None:
    """Start a detached local Ray head and run the app on it; it outlives this command."""
    import shutil
    import subprocess

    ray_bin = shutil.which("ray")
    if ray_bin is None:
        raise StreamMuseError("the `ray` command is not on PATH (is ray[serve] installed in this environment?)")
    started = subprocess.run([ray_bin, "start", "--head", "--disable-usage-stats"], capture_output=True, text=True)
    if started.returncode != 0 and "already" not in started.stdout + started.stderr:
        raise StreamMuseError(f"ray start failed: {(started.stderr.strip().splitlines() or ['?'])[-1]}")
    import ray

    url = start_sized(options, port, "0.0.0.0", address="auto")
    ray.shutdown()  # disconnect only: the detached Serve app keeps running
    _console.print(f"StreamMUSE deployed at [bold]{url.replace('0.0.0.0', '127.0.0.1')}[/]; stop it with `ray stop`")


def register(app: typer.Typer) -> None:
    """Add `serve` and `deploy` to the streammuse app."""
    app.command("serve")(serve)
    app.command("deploy")(deploy)
