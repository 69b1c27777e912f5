"""Issue 30: the RayService's Serve config on a real Ray cluster of two nodes.

The manifest is rendered (``streammuse deploy --cluster k8s --dry-run --cpu-only``), its
``serveConfigV2`` is deployed on a head and one worker node started by Ray's own
multi-node harness (``ray.cluster_utils.Cluster``, both on 127.0.0.1), through the same
call the dashboard's REST handler makes for the KubeRay operator (``deploy_apps``). The
replicas are kept on the worker by a custom resource, as ``nvidia.com/gpu`` keeps them on
the GPU worker group. A song plays through the cluster; its replica's process is killed
(SIGKILL) mid-song and the song moves to the other replica. Then the same cluster runs a
two-configuration ``replay --sweep ... --ray-address`` whose tasks land on both nodes.

What is read from the rendered YAML, not written again here: the Serve config, the
Secret the pods' environment names, the worker's CPUs (KubeRay's ``--num-cpus``), the
probes' paths, and the autoscaling policy the deployed app reports.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from streammuse.cli.main import app as cli
from streammuse.client.transports import HttpTransport
from streammuse.experiment import replay as rp
from streammuse.experiment.config import ReplayConfig
from streammuse.serving.raylocal import free_port

TESTSET = Path(__file__).resolve().parents[1] / "testset"
WORKER_RESOURCE = "streammuse-worker"  # stands in for nvidia.com/gpu: only the worker has it
KILL_AT_TICK = 24  # the song's replica dies here (3 s into the song at 120 BPM)
TAU_S = 60.0 / (4 * 120.0)


def _render(tmp_path: Path) -> dict:
    out = tmp_path / "k8s"
    result = CliRunner().invoke(cli, ["deploy", "--cluster", "k8s", "--dry-run", "--cpu-only", "--min-replicas", "2",
                                      "--max-replicas", "2", "--max-sessions", "4", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    return yaml.safe_load((out / "rayservice.yaml").read_text())


def _pods(manifest: dict) -> tuple[dict, dict, dict]:
    cluster = manifest["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    group = cluster["workerGroupSpecs"][0]
    return head, group, group["template"]["spec"]["containers"][0]


def deployed_config(manifest: dict, http_port: int) -> dict:
    """The manifest's serveConfigV2 with what this one-host cluster adds: the replicas ask
    for the worker's custom resource, and one HTTP proxy (on the head, at a free port),
    since the nodes share an address where pods each have their own."""
    config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    for deployment in config["applications"][0]["deployments"]:
        deployment["ray_actor_options"]["resources"] = {WORKER_RESOURCE: 1}
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {"host": "127.0.0.1", "port": http_port}
    return config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node; the rendered Serve config deployed; torn down after."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    manifest = _render(tmp_path_factory.mktemp("render"))
    head_pod, group, worker_pod = _pods(manifest)
    # The pods' environment: each Secret the manifest requires (not optional) gets a
    # value, as `deploy --cluster k8s` creates it; the optional token Secret is absent.
    env = {e["name"]: secrets.token_hex(32) for e in worker_pod["env"]
           if not e["valueFrom"]["secretKeyRef"].get("optional", False)}
    assert env.keys() == {e["name"] for e in head_pod["env"] if not e["valueFrom"]["secretKeyRef"].get("optional")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the node processes (and so the replicas) inherit it
    started = time.monotonic()
    dash_port, http_port = free_port(), free_port()
    # Both nodes at this host's address (the GCS bound to 127.0.0.1 only is not reached
    # from a node that resolves 127.0.0.1 to that address); a temp folder of our own, so
    # that `ray.init(address="auto")` elsewhere on the machine never finds this cluster.
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_port": dash_port,
        "temp_dir": tempfile.mkdtemp(prefix="ray-", dir="/tmp")})
    # KubeRay passes the container's CPU limit as --num-cpus.
    worker = nodes.add_node(num_cpus=int(worker_pod["resources"]["limits"]["cpu"]),
                            resources={WORKER_RESOURCE: group["replicas"] * 2})
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False, logging_level="WARNING")
    config = deployed_config(manifest, http_port)
    schema = ServeDeploySchema.model_validate(config)
    client = serve_start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location)
    client.deploy_apps(schema)
    url = f"http://127.0.0.1:{http_port}"
    _wait_healthy(url, 240.0)
    info = {"url": url, "dash": f"http://127.0.0.1:{dash_port}", "manifest": manifest, "config": config,
            "client": client, "address": nodes.address, "head": nodes.head_node.node_id, "worker": worker.node_id,
            "nodes": nodes, "worker_node": worker, "env": env,
            "start_to_serving_s": time.monotonic() - started}
    print(f"\ncluster start to serving: {info['start_to_serving_s']:.1f} s")
    try:
        yield info
    finally:
        ray.shutdown()
        nodes.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


def _wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the deployed app did not answer at {url} within {timeout_s:.0f} s")


def _replicas(cluster) -> list:
    details = cluster["client"].get_serve_details()
    return details["applications"]["streammuse"]["deployments"]["StreamMuseServer"]["replicas"]


class ReplicaKiller(httpx.BaseTransport):
    """Between the client and the cluster, watching only: records which replica answered
    each of the song's requests, and at ``KILL_AT_TICK`` SIGKILLs that replica's process."""

    def __init__(self, inner: httpx.BaseTransport, pids: dict[str, int]) -> None:
        self.inner, self.pids = inner, pids  # replica id (the x-streammuse-replica header) -> pid
        self.answers: list[tuple[int, str, int, str, bool]] = []  # (tick, session, status, replica, with context)
        self.killed: tuple[str, str] | None = None  # (replica, the song's session on it)
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.url.path.endswith("/infer") else {}
        tick = body.get("request_tick", -1)
        with self.lock:
            played = [a for a in self.answers if a[2] == 200]  # the replica that last played the song
            if self.killed is None and tick >= KILL_AT_TICK and played:
                _, session, _, victim, _ = played[-1]
                os.kill(self.pids[victim], signal.SIGKILL)
                self.killed = (victim, session)
        response = self.inner.handle_request(request)
        if tick >= 0:
            self.answers.append((tick, request.headers.get("x-session-id", ""), response.status_code,
                                 response.headers.get("x-streammuse-replica", ""), "context" in body))
        return response


def _longest_gap_ticks(ticks: pd.DataFrame, from_tick: int) -> int:
    """The longest run of ticks without a fresh frame, from ``from_tick`` on."""
    best = run = 0
    for fresh in ticks[ticks.tick >= from_tick].sort_values("tick").fresh:
        run = 0 if fresh else run + 1
        best = max(best, run)
    return best


def test_the_manifests_config_serves_on_the_worker_with_its_probes_secret_and_policy(cluster):
    manifest, config = cluster["manifest"], cluster["config"]
    # What was deployed is the manifest's serveConfigV2 plus only the one-host additions.
    original = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    stripped = copy.deepcopy(config)
    for d in stripped["applications"][0]["deployments"]:
        assert d["ray_actor_options"].pop("resources") == {WORKER_RESOURCE: 1}
    assert {k: v for k, v in stripped.items() if k not in ("proxy_location", "http_options")} == original
    replicas = _replicas(cluster)
    assert len(replicas) == 2 and {r["node_id"] for r in replicas} == {cluster["worker"]}
    for replica in replicas:  # the Secret's value reached every replica process
        environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().decode().split("\0")
        assert {f"{k}={v}" for k, v in cluster["env"].items()} <= set(environ)
    # The probes the pods would run, at the paths the manifest names.
    head_pod, _, worker_pod = _pods(manifest)
    assert httpx.get(cluster["url"] + worker_pod["readinessProbe"]["httpGet"]["path"], timeout=5).status_code == 200
    assert httpx.get(cluster["dash"] + head_pod["readinessProbe"]["httpGet"]["path"], timeout=30).status_code == 200
    # The autoscaling policy the running deployment uses is the manifest's.
    details = cluster["client"].get_serve_details()["applications"]["streammuse"]["deployments"]["StreamMuseServer"]
    wanted = original["applications"][0]["deployments"][0]["autoscaling_config"]
    running = details["deployment_config"]["autoscaling_config"]
    assert running["policy"]["policy_function"] == wanted["policy"]["policy_function"]
    assert (running["min_replicas"], running["max_replicas"]) == (wanted["min_replicas"], wanted["max_replicas"])
    info = httpx.get(cluster["url"] + "/v1/model", timeout=10).json()
    assert info["max_sessions"] == original["applications"][0]["args"]["max_sessions"]


def test_a_song_moves_when_its_replica_process_on_the_worker_dies(cluster, tmp_path):
    pids = _PidsByHeader({r["replica_id"]: r["pid"] for r in _replicas(cluster)})
    transport = HttpTransport(cluster["url"])
    killer = ReplicaKiller(httpx.HTTPTransport(), pids)
    transport.client = httpx.Client(base_url=cluster["url"], transport=killer, timeout=30.0)
    cfg = ReplayConfig(testset=TESTSET, setting="local", clock="wall", interval=2, gen_len=5, songs=1, max_bars=4,
                       out=tmp_path, concurrency=1)
    path, _ = rp.run_pair(cfg, rp.load_songs(cfg), rp.resolve_profile(cfg), transport=transport, model_id="cluster")
    assert killer.killed is not None, "the song never reached the tick where its replica dies"
    victim, session = killer.killed
    after = [(t, sid, r, ctx) for t, sid, s, r, ctx in killer.answers if t >= KILL_AT_TICK and s == 200]
    # (On a loaded machine the song may already have moved once before, on its deadline.)
    assert after, "no request was answered after the kill"
    assert victim not in {r for _, _, r, _ in after}  # the other replica played the rest
    # Usually from the song's context, re-sent on its session (the other replica answered
    # unknown_session) or sent to a new one (the proxy answered 5xx: the song moved). Not
    # asserted: in 4 of 6 runs here the other replica answered the session's next request at
    # once, without the context, as if it held a copy of its own (reported in issue 30).
    moved, with_context = after[0][1] != session, after[0][3]
    ticks = pd.read_parquet(path / "ticks.parquet")
    gap = _longest_gap_ticks(ticks, KILL_AT_TICK)
    print(f"\nfail-over: longest stretch without a fresh frame after the kill {gap} ticks = {gap * TAU_S:.2f} s; "
          f"first answer from the other replica at tick {after[0][0]} ({'a new' if moved else 'the same'} session, {'with' if with_context else 'without'} the context)")
    # Playing again on the other replica (on a loaded machine answers may come a tick
    # late, so a tick then plays from the request before the newest: not fresh, but played).
    rest = ticks[ticks.tick >= after[0][0] + 4]
    assert rest.available.mean() >= 0.8 and rest.fresh.any()
    assert {r["node_id"] for r in _replicas(cluster)} <= {cluster["worker"]}  # the replacement too


class _PidsByHeader(dict):
    """Replica pids by the response header's full id (``...#<short id>``) or the short id."""

    def __init__(self, by_short: dict[str, int]) -> None:
        super().__init__(by_short)

    def __missing__(self, full: str) -> int:
        for short, pid in self.items():
            if full.endswith(short):
                return pid
        raise KeyError(full)


def _sweep(address: str, out: Path) -> tuple[float, list[Path]]:
    """``streammuse replay --sweep "1,3 2,5" --ray-address`` as its own driver; seconds, run folders."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streammuse", "replay", str(TESTSET), "--setting", "local", "--clock", "sim",
                           "--random-weights", "--sweep", "1,3 2,5", "--songs", "1", "--max-bars", "4", "--out", str(out),
                           "--ray-address", address], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.monotonic() - started, sorted(p.parent for p in out.glob("*/manifest.json"))


def test_a_sweep_on_the_cluster_runs_its_configurations_on_both_nodes(cluster, tmp_path):
    cluster["client"].delete_all_apps()  # the replicas' CPUs go back to the sweep's tasks
    two_s, runs = _sweep(cluster["address"], tmp_path / "two")
    assert len(runs) == 2
    nodes = {json.loads((run / "manifest.json").read_text())["ray_node_id"] for run in runs}
    assert nodes == {cluster["head"], cluster["worker"]}
    cluster["nodes"].remove_node(cluster["worker_node"])  # the same sweep on the head alone
    one_s, runs = _sweep(cluster["address"], tmp_path / "one")
    assert {json.loads((run / "manifest.json").read_text())["ray_node_id"] for run in runs} == {cluster["head"]}
    print(f"\nsweep of 2 configurations: {two_s:.1f} s on two nodes, {one_s:.1f} s on the head alone")
