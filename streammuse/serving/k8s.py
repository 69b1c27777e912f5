"""Render the KubeRay ``RayService`` that runs the Serve app on Kubernetes, and apply it.

The manifest is written to ``./streammuse-k8s/rayservice.yaml`` by default, never into the
source tree; ``k8s/rayservice.yaml`` in the repository is the documented example, the
render with default options (a test keeps the two equal). No image is published: build and
push one (docs/deploy.md) and pass ``--image``; a dry run without it renders
:data:`PLACEHOLDER_IMAGE`, and applying requires a real one.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import yaml

from streammuse.core.session_ids import SECRET_ENV
from streammuse.errors import StreamMuseError
from streammuse.serving.app import DeployOptions

RAY_VERSION = "2.60.0"  # the consistent-hash router is experimental: image and operator pin this
PLACEHOLDER_IMAGE = "REGISTRY/streammuse:cuda"  # says what to put there; never pullable
DEFAULT_OUT_DIR = Path("streammuse-k8s")
EXAMPLE = Path(__file__).resolve().parents[2] / "k8s" / "rayservice.yaml"  # in a source checkout
SERVE_PORT = 8000
# Session ids are signed with this Secret's key (core/session_ids.py): every pod reads the
# same one, and it outlives redeploys, so live sessions' ids stay valid across them.
SESSION_SECRET_NAME, SESSION_SECRET_KEY = "streammuse-session-secret", "secret"


def serve_config(options: DeployOptions) -> dict:
    """serveConfigV2: the app builder, its args, and the deployment's autoscaling."""
    args = {k: v for k, v in asdict(options).items() if k not in ("name", "route_prefix", "random_weights") and v is not None}
    return {
        "applications": [{
            "name": options.name,
            "import_path": "streammuse.serving.app:build_app",
            "route_prefix": options.route_prefix,
            "args": args,
            "deployments": [{"name": "StreamMuseServer", **options.deployment_options()}],
        }],
    }


def _container(name: str, image: str, resources: dict, ports: list[tuple[str, int]], probe: dict) -> dict:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": n, "containerPort": p} for n, p in ports],
        "resources": {"requests": resources, "limits": resources},
        "env": [
            {"name": "STREAMMUSE_TOKEN", "valueFrom": {"secretKeyRef": {"name": "streammuse-token", "key": "token", "optional": True}}},
            # Not optional: a pod without it would sign ids the other replicas reject.
            {"name": SECRET_ENV, "valueFrom": {"secretKeyRef": {"name": SESSION_SECRET_NAME, "key": SESSION_SECRET_KEY}}},
        ],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 60, "failureThreshold": 5},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False},
    }


def render_rayservice(options: DeployOptions, image: str = PLACEHOLDER_IMAGE, name: str = "streammuse") -> dict:
    """The RayService manifest: a CPU head (no replicas on it) and a worker group with
    one replica per pod (``nvidia.com/gpu: 1`` unless CPU-only)."""
    http_probe = {"httpGet": {"path": "/-/healthz", "port": SERVE_PORT}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}
    head_probe = {"httpGet": {"path": "/api/gcs_healthz", "port": 8265}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}
    worker_resources = {"cpu": str(max(2, int(options.num_cpus) + 1)), "memory": "8Gi"}
    if not options.cpu_only:
        worker_resources["nvidia.com/gpu"] = str(max(1, int(options.num_gpus)))
    worker_pod: dict = {"containers": [_container("ray-worker", image, worker_resources, [("serve", SERVE_PORT)], http_probe)]}
    if not options.cpu_only:
        worker_pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    head_ports = [("gcs", 6379), ("dashboard", 8265), ("client", 10001), ("serve", SERVE_PORT)]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "streammuse"}},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(options), sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                    "template": {"spec": {"containers": [_container("ray-head", image, {"cpu": "2", "memory": "4Gi"}, head_ports, head_probe)]}},
                },
                "workerGroupSpecs": [{
                    "groupName": "cpu-workers" if options.cpu_only else "gpu-workers",
                    "replicas": options.min_replicas,
                    "minReplicas": options.min_replicas,
                    "maxReplicas": options.max_replicas,
                    "rayStartParams": {},
                    "template": {"spec": worker_pod},
                }],
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks (serveConfigV2 stays readable), no anchors."""

    def ignore_aliases(self, data) -> bool:
        return True


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def manifest_text(manifest: dict) -> str:
    """The YAML file: a header saying how it was made, then the manifest."""
    header = "# Rendered by `streammuse deploy --cluster k8s`; edit the flags, not this file.\n"
    if PLACEHOLDER_IMAGE in yaml.safe_dump(manifest):
        header += (f"# {PLACEHOLDER_IMAGE} is a placeholder: build and push the image (docs/deploy.md), then\n"
                   "# render again with --image <registry>/streammuse:<tag>.\n")
    return header + yaml.dump(manifest, Dumper=_Dumper, sort_keys=False)


def write_manifest(manifest: dict, out_dir: Path) -> Path:
    """Write ``manifest`` to ``out_dir/rayservice.yaml``; the path."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "rayservice.yaml"
        path.write_text(manifest_text(manifest))
    except OSError as exc:
        raise StreamMuseError(f"cannot write the manifest into {out_dir}: {exc.strerror}") from None
    return path


def ensure_session_secret(kubectl: str, context: str) -> str:
    """Create the session-signing Secret with a random key unless it exists (never
    replaced: that would invalidate every live session id); a line saying which."""
    found = subprocess.run([kubectl, "get", "secret", SESSION_SECRET_NAME, "-o", "name"], capture_output=True, text=True, timeout=60)
    if found.returncode == 0:
        return f"secret/{SESSION_SECRET_NAME} exists (kept)"
    made = subprocess.run([kubectl, "create", "secret", "generic", SESSION_SECRET_NAME, f"--from-file={SESSION_SECRET_KEY}=/dev/stdin"],
                          input=secrets.token_hex(32), capture_output=True, text=True, timeout=60)  # stdin: not in ps
    if made.returncode != 0:
        last = (made.stderr.strip().splitlines() or ["kubectl create secret failed"])[-1]
        raise StreamMuseError(f"cluster {context!r} unreachable or refused secret/{SESSION_SECRET_NAME}: {last}")
    return made.stdout.strip()


def apply_manifest(path: Path) -> str:
    """Make sure the session-signing Secret exists, then ``kubectl apply -f path`` on the
    current context; their output. StreamMuseError when kubectl, a context or the
    cluster is missing."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise StreamMuseError(f"kubectl not found; the manifest is in {path} (apply it with kubectl apply -f)")
    context = subprocess.run([kubectl, "config", "current-context"], capture_output=True, text=True)
    if context.returncode != 0:
        raise StreamMuseError(f"kubectl has no current context; the manifest is in {path}")
    secret = ensure_session_secret(kubectl, context.stdout.strip())
    done = subprocess.run([kubectl, "apply", "-f", str(path)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["kubectl apply failed"])[-1]
        raise StreamMuseError(f"cluster {context.stdout.strip()!r} unreachable or refused the manifest: {last}")
    return secret + "\n" + done.stdout.strip()
