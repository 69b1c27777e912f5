"""`streammuse deploy`: the KubeRay RayService validates against the CRD schema."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from streammuse.cli.main import app

REPO = Path(__file__).resolve().parents[1]
CRD = REPO.parent / "shared" / "schemas" / "kuberay" / "ray.io_rayservices.yaml"


@pytest.fixture(scope="module")
def rayservice_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _serve_app(manifest: dict) -> dict:
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"][0]


def test_committed_manifest_validates_and_is_the_default(rayservice_schema, tmp_path, monkeypatch):
    """The dry run writes ./streammuse-k8s/ (not the tracked k8s/), and with default
    options its file is, byte for byte, the committed example."""
    example = REPO / "k8s" / "rayservice.yaml"
    before = (example.read_bytes(), example.stat().st_mtime_ns)
    committed = yaml.safe_load(example.read_text())
    jsonschema.validate(committed, rayservice_schema)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["deploy", "--cluster", "k8s", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "placeholder" in result.output
    assert (tmp_path / "streammuse-k8s" / "rayservice.yaml").read_bytes() == before[0]
    assert (example.read_bytes(), example.stat().st_mtime_ns) == before  # the source tree is left alone
    workers = committed["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    container = workers["template"]["spec"]["containers"][0]
    assert container["image"] == "REGISTRY/streammuse:cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["port"] == 8000
    serve_app = _serve_app(committed)
    assert serve_app["import_path"] == "streammuse.serving.app:build_app"
    assert serve_app["deployments"][0]["autoscaling_config"]["max_replicas"] == 4


def test_flags_reach_the_manifest(rayservice_schema, tmp_path):
    args = ["deploy", "--cluster", "k8s", "--dry-run", "--out-dir", str(tmp_path), "--image", "reg.example/sm:1",
            "--min-replicas", "2", "--max-replicas", "6", "--cpu-only"]
    assert CliRunner().invoke(app, args).exit_code == 0
    manifest = yaml.safe_load((tmp_path / "rayservice.yaml").read_text())
    jsonschema.validate(manifest, rayservice_schema)
    group = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["maxReplicas"]) == (2, 6)
    assert "nvidia.com/gpu" not in group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert group["template"]["spec"]["containers"][0]["image"] == "reg.example/sm:1"
    assert _serve_app(manifest)["deployments"][0]["ray_actor_options"]["num_gpus"] == 0.0


def test_unknown_or_unreachable_cluster_is_one_line_exit_2(tmp_path, monkeypatch):
    result = CliRunner().invoke(app, ["deploy", "--cluster", "mars"])
    assert result.exit_code == 2 and "unknown cluster 'mars'" in result.output
    result = CliRunner().invoke(app, ["deploy", "--cluster", "k8s", "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--image is required" in result.output  # no published image
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl
    result = CliRunner().invoke(app, ["deploy", "--cluster", "k8s", "--out-dir", str(tmp_path / "out"),
                                      "--image", "reg.example/sm:1"])
    assert result.exit_code == 2 and "kubectl not found" in result.output
    assert (tmp_path / "out" / "rayservice.yaml").exists()
    result = CliRunner().invoke(app, ["deploy", "--cluster", "k8s", "--dry-run", "--min-replicas", "3", "--max-replicas", "2"])
    assert result.exit_code == 2 and "--min-replicas" in result.output


def _env(container: dict) -> dict:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}


def test_session_secret_comes_from_a_kubernetes_secret(rayservice_schema):
    """Every pod (head: the Serve controller builds the app; workers: the replicas) reads
    the signing key from one Secret, so ids survive redeploys and replica moves."""
    committed = yaml.safe_load((REPO / "k8s" / "rayservice.yaml").read_text())
    jsonschema.validate(committed, rayservice_schema)
    cluster = committed["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        ref = _env(pod["containers"][0])["STREAMMUSE_SESSION_SECRET"]
        assert ref == {"name": "streammuse-session-secret", "key": "secret"}  # not optional
    assert "session_secret" not in _serve_app(committed)["args"]  # the key itself is never in the manifest


FAKE_KUBECTL = """#!/bin/sh
echo "$*" >> "$LOG"
case "$1 $2" in
  "config current-context") echo kind-test ;;
  "get secret") [ -f "$STATE" ] || exit 1; echo secret/streammuse-session-secret ;;
  "create secret") cat > "$STATE"; echo secret/streammuse-session-secret created ;;
  "apply -f") echo rayservice.ray.io/streammuse configured ;;
esac
"""


def test_apply_creates_the_session_secret_once(tmp_path, monkeypatch):
    """A stand-in kubectl (the cluster is not under test) records what deploy asks of it."""
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{kubectl.parent}:/usr/bin:/bin")
    monkeypatch.setenv("LOG", str(tmp_path / "log"))
    monkeypatch.setenv("STATE", str(tmp_path / "secret"))
    args = ["deploy", "--cluster", "k8s", "--out-dir", str(tmp_path / "out"), "--image", "reg.example/sm:1"]
    for _ in range(2):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    calls = (tmp_path / "log").read_text().splitlines()
    assert [c for c in calls if c.startswith("create")] == [
        "create secret generic streammuse-session-secret --from-file=secret=/dev/stdin"]  # once, then kept
    assert len((tmp_path / "secret").read_text()) == 64  # 256 random bits, hex, from stdin
    assert calls.count(f"apply -f {tmp_path / 'out' / 'rayservice.yaml'}") == 2
    assert "exists (kept)" in result.output
