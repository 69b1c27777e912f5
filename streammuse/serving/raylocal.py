"""Start and stop the Serve app on a local Ray instance (``streammuse serve``, embedded servers, tests)."""

from __future__ import annotations

import socket
import time

from streammuse.errors import StreamMuseError

APP_NAME = "streammuse"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_local(options: dict, port: int | None = None, host: str = "127.0.0.1", num_cpus: int | None = None,
                address: str | None = None, timeout_s: float = 180.0) -> str:
    """Start (or join, with ``address``) a Ray instance, run the app, wait until healthy; the URL.

    ``options``: :class:`~streammuse.serving.app.DeployOptions` fields.
    """
    import httpx
    import ray
    from ray import serve

    from streammuse.serving.app import build_app

    port = port or free_port()
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 namespace="streammuse", ignore_reinit_error=True)
    try:
        serve.start(http_options={"host": host, "port": port})
    except (ray.exceptions.RayError, TimeoutError) as exc:  # e.g. the port is taken, the proxy died
        stop_local()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StreamMuseError(f"Ray Serve could not start its HTTP proxy on {host}:{port}: {first}") from None
    try:
        serve.run(build_app(options), name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:  # a replica's __init__ failed (no checkpoint, no GPU, ...)
        reason = _failure_reason() or str(exc).splitlines()[0]
        stop_local()
        raise StreamMuseError(f"the Serve app failed to start: {reason}") from None
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        app = serve.status().applications.get(APP_NAME)
        if app is not None and app.status == "DEPLOY_FAILED":
            stop_local()
            last = (app.message.strip().splitlines() or ["?"])[-1]
            raise StreamMuseError(f"the Serve app failed to start: {last}")
        time.sleep(0.5)
    stop_local()
    raise StreamMuseError(f"the Serve app did not become healthy at {url} within {timeout_s:.0f} s")


def _failure_reason() -> str:
    """The last line of the failed deployment's error (the replica's exception)."""
    from ray import serve

    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:  # the status call itself failing must not hide the real error
        return ""
    messages = [d.message for d in (app.deployments.values() if app else []) if d.message] + ([app.message] if app else [])
    lines = [ln.strip() for m in messages for ln in m.splitlines() if "Error" in ln]
    return lines[-1] if lines else ""


def stop_local() -> None:
    """Shut the Serve app and the local Ray instance down."""
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()
