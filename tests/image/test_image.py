"""`make test-image` (issue 30): the CPU image built from the project's Dockerfile, run,
and checked from outside the container.

Needs a running Docker daemon (`make test-image` starts one) and, where Docker Hub is out
of reach, builds the Dockerfile on the stand-in base (image/standin-base.sh) instead of
rayproject/ray. Not part of `make test`: CI has no daemon, and a build takes minutes.
Prints the figures (build time, size, start to healthy, the replayed song's ISR_w) and
writes them to runs/test-image-<time>.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from streammuse.metrics.realtime import isr_w
from streammuse.serving.raylocal import free_port

ROOT = Path(__file__).resolve().parents[2]
TESTSET = ROOT / "testset"
STANDIN = "streammuse-standin/ray:2.60.0-py311-cpu"
IMAGE = "streammuse:cpu"
WHEELS = ROOT / "image" / "wheels"
GRACE_S = 10  # docker stop's default grace period before SIGKILL
REPLAY = ["--setting", "local", "--songs", "1", "--max-bars", "8", "--concurrency", "1", "-i", "2", "-g", "5"]
FIGURES: dict = {}
DOCKER = os.environ.get("DOCKER", "docker")  # the client (Makefile: one whose BuildKit needs no plugin)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[-1500:]}")
    return done


def _torch_wheel() -> Path | None:
    """A torch==2.13.0 CPU wheel that pip finds on this machine (its find-links, no index:
    nothing is downloaded) into image/wheels/, where the build takes it before the index;
    None where there is none, and the build takes torch from the CPU index."""
    for old in WHEELS.glob("torch-*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-index", "--no-deps", "torch==2.13.0",
                    "-d", str(WHEELS)], capture_output=True, timeout=600)
    found = sorted(WHEELS.glob("torch-2.13.0*.whl"))
    for wheel in found:
        if "+cpu" not in wheel.name:  # a CUDA build would bring its NVIDIA libraries along
            wheel.unlink()
    return next((w for w in found if w.exists()), None)


@pytest.fixture(scope="module")
def image():
    if docker("info", check=False).returncode != 0:
        pytest.fail("no Docker daemon answers: run `make test-image` (it starts one)")
    if docker("image", "inspect", STANDIN, check=False).returncode != 0:
        started = time.monotonic()
        subprocess.run(["nice", "-n", "15", "sh", str(ROOT / "image" / "standin-base.sh"), STANDIN], check=True,
                       timeout=1800, env={**os.environ, "DOCKER": DOCKER})
        FIGURES["standin_base_build_s"] = round(time.monotonic() - started, 1)
    wheel = _torch_wheel()
    started = time.monotonic()
    try:
        build = subprocess.run(
            ["nice", "-n", "15", DOCKER, "build", "--network", "host", "-t", IMAGE,
             "--build-arg", f"BASE_CPU={STANDIN}", "--build-arg", f"BASE_GPU={STANDIN}",
             # with the wheel in image/wheels/ the CPU index (out of reach here) is not needed
             *(["--build-arg", "TORCH_INDEX_CPU=https://pypi.org/simple"] if wheel else []), str(ROOT)],
            capture_output=True, text=True, timeout=3600, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    finally:
        if wheel is not None:
            wheel.unlink()
    assert build.returncode == 0, build.stderr[-3000:]
    FIGURES["image_build_s"] = round(time.monotonic() - started, 1)
    FIGURES["image_size_mb"] = round(int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout) / 1e6)
    return IMAGE


@pytest.fixture(scope="module")
def container(image):
    port = free_port()
    name = f"streammuse-test-{os.getpid()}"
    started = time.monotonic()
    # Host network: this machine's daemon runs without a bridge. --shm-size: Ray's object store.
    docker("run", "-d", "--name", name, "--network", "host", "--shm-size", "1g", "-e", f"STREAMMUSE_PORT={port}", image)
    url = f"http://127.0.0.1:{port}"
    try:
        healthy_s = _wait(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 600)
        FIGURES["start_to_healthz_s"] = round(healthy_s - started, 1)
        # `serve` sizes the deployment through its HTTP path, then restarts it, then says so.
        ready_s = _wait(lambda: "StreamMUSE serving at" in docker("logs", name).stdout, 600)
        _wait(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 120)
        FIGURES["start_to_serving_s"] = round(ready_s - started, 1)
        yield {"name": name, "url": url}
    finally:
        docker("rm", "-f", name, check=False)
        out = ROOT / "runs" / f"test-image-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(FIGURES, indent=2) + "\n")
        print(f"\nimage figures ({out}): {json.dumps(FIGURES)}")


def _wait(ready, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready within {timeout_s:.0f} s")


def test_the_image_answers_and_serves_the_packages_checkpoint(container):
    from streammuse.model.engine import StreamingEngine

    assert httpx.get(container["url"] + "/healthz", timeout=5).json() == {"status": "ok"}
    model = httpx.get(container["url"] + "/v1/model", timeout=10).json()
    assert model["model_id"] == StreamingEngine.load().model_id and model["device"] == "cpu"
    # The only checkpoint in the image is the installed package's (the source copy is gone).
    found = docker("exec", container["name"], "sh", "-c",
                   "find / -xdev -name model.safetensors -path '*streammuse*' 2>/dev/null || true").stdout.split()
    assert len(found) == 1 and "/site-packages/streammuse/model/checkpoints/" in found[0], found
    assert "nvidia" not in docker("exec", container["name"], "pip", "list").stdout  # no CUDA libraries


def test_every_process_in_the_container_runs_as_uid_1000(container):
    assert docker("inspect", container["name"], "--format", "{{.Config.User}}").stdout.strip() == "ray"
    table = docker("top", container["name"], "-eo", "pid,uid,args").stdout.splitlines()[1:]
    rows = [line.split(None, 2) for line in table]
    assert rows and {uid for _, uid, _ in rows} == {"1000"}, rows
    assert any("streammuse serve" in args for _, _, args in rows)


def test_a_song_replayed_through_the_container(container, tmp_path):
    done = subprocess.run([sys.executable, "-m", "streammuse", "replay", str(TESTSET), *REPLAY,
                           "--server", container["url"], "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = [p.parent for p in tmp_path.glob("*/manifest.json")]
    ticks = pd.read_parquet(run / "ticks.parquet")
    FIGURES["container_song_isr_w"] = round(isr_w(ticks.available, ticks.staleness), 3)
    assert ticks.available.mean() > 0.5  # it played (a loaded machine may miss some ticks)


def test_docker_stop_ends_it_within_its_grace_period(container):
    started = time.monotonic()
    docker("stop", "-t", str(GRACE_S), container["name"], timeout=GRACE_S + 30)
    FIGURES["docker_stop_s"] = round(time.monotonic() - started, 1)
    state = json.loads(docker("inspect", container["name"], "--format", "{{json .State}}").stdout)
    assert state["ExitCode"] == 0, state  # 137 would mean the SIGKILL after the grace period
    assert FIGURES["docker_stop_s"] < GRACE_S
    assert docker("logs", container["name"]).stdout.rstrip().endswith("stopped")
