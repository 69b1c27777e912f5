"""Start and stop the Serve app on a local Ray instance (``streammuse serve``, embedded servers, tests).

Quietly: Ray's own messages stay in its log folder (:func:`logs_dir`, Ray's session folder
``<temp>/ray/session_*/logs``), not on the terminal. Token authentication stays on (Ray's
default for a new local instance) without Ray's warning that it is; Ray's and Serve's INFO
lines are not printed; a Ray instance started here is stopped by ``ray.shutdown()`` alone
(``serve.shutdown()`` first kills the Serve controller during its own graceful shutdown,
which the raylet reports as a failed task); and SIGTERM stops it through Python instead of
Ray's C++ crash handler, which would print a stack dump.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

from streammuse.errors import StreamMuseError

APP_NAME = "streammuse"
_state: dict = {}  # "started_here": we started the instance; "sigterm": the handler to restore


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    """StreamMuseError unless ``host:port`` can be bound now. Ray Serve's proxy would
    otherwise start beside a server already listening there (both answering), or fail
    later inside Ray with no clear message."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StreamMuseError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); "
                                  "is another server running there? pick another port") from None


def start_local(options: dict, port: int | None = None, host: str = "127.0.0.1", num_cpus: int | None = None,
                address: str | None = None, timeout_s: float = 180.0) -> str:
    """Start (or join, with ``address``) a Ray instance, run the app, wait until healthy; the URL.

    ``options``: :class:`~streammuse.serving.app.DeployOptions` fields.
    """
    import ray

    if port is not None and address is None:
        check_port_free(host, port)  # a fresh instance: nothing of ours listens there yet
    port = port or free_port()
    if not ray.is_initialized():
        init_quietly(address, num_cpus)
    _start_serve(host, port)
    url = f"http://{host}:{port}"
    _run_app(options, url, timeout_s)
    return url


def redeploy(options: dict, url: str, timeout_s: float = 180.0) -> None:
    """Run the app again on the running instance with new ``options`` (Serve replaces its
    replicas, and Ray's limits follow the new ones); wait until it is healthy at ``url``."""
    _run_app(options, url, timeout_s)


def _run_app(options: dict, url: str, timeout_s: float) -> None:
    """``serve.run`` the app and return once ``url/healthz`` answers 200; StreamMuseError
    (Ray stopped) if the app failed or ``timeout_s`` passed."""
    import httpx
    from ray import serve

    from streammuse.serving.app import build_app

    _quiet_serve()
    try:
        serve.run(build_app(options), name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:  # a replica's __init__ failed (no checkpoint, no GPU, ...)
        reason = _failure_reason() or str(exc).splitlines()[0]
        stop_local()
        raise StreamMuseError(f"the Serve app failed to start: {reason}") from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
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


def _start_serve(host: str, port: int, attempts: int = 3) -> None:
    """``serve.start``; on a busy machine the first HTTP proxy can miss its readiness checks
    (3 x 5 s) and be replaced by the controller, which fails the wait on it with "actor
    died": wait for the replacement then (``serve.start`` again joins the same controller)."""
    import ray
    from ray import serve

    for attempt in range(attempts):
        try:
            serve.start(http_options={"host": host, "port": port})
            return
        except (ray.exceptions.RayError, TimeoutError) as exc:  # e.g. the port is taken, the proxy died
            if isinstance(exc, ray.exceptions.RayActorError) and attempt + 1 < attempts:
                continue
            stop_local()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StreamMuseError(f"Ray Serve could not start its HTTP proxy on {host}:{port}: {first}") from None


def init_quietly(address: str | None, num_cpus: int | None) -> None:
    """Start (or join) Ray without its token warning and INFO lines; SIGTERM stops it cleanly."""
    import ray

    # Ray enables token authentication for a new local instance and warns that it did:
    # keep the default, drop the warning (and Serve's INFO lines).
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    _quiet_serve()
    # address None: a new instance of our own ("local"), even where another one runs on
    # this host (a `ray start` cluster), which ray.init(address=None) would join, and then
    # refuse num_cpus ("When connecting to an existing cluster, num_cpus ... must not be provided").
    ray.init(address=address or "local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             namespace="streammuse", ignore_reinit_error=True, logging_level=logging.WARNING)
    _state["started_here"] = address is None
    if address is None and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        # Ray's core worker installed a C++ handler that dumps a stack trace on SIGTERM:
        # exit through Python instead, so `with` blocks and finally clauses stop Ray.
        _state["sigterm"] = signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _quiet_serve() -> None:
    """No INFO lines from Serve. Also a filter: Serve resets its logger's level and
    handlers when it configures it again (a second ``serve.run`` in this process)."""
    for name in ("ray.serve", "ray.serve._private"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if _warnings_only not in logger.filters:
            logger.addFilter(_warnings_only)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def logs_dir() -> str | None:
    """The folder that holds the running Ray instance's logs (None when Ray is not running)."""
    try:
        import ray

        return ray._private.worker._global_node.get_logs_dir_path() if ray.is_initialized() else None
    except AttributeError:  # a Ray without this (private) accessor
        return None


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
    """Shut the Serve app and the local Ray instance down (quietly, see the module docstring)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        if not _state.get("started_here"):
            serve.shutdown()  # a cluster we joined outlives us: remove our app from it
        ray.shutdown()
    if "sigterm" in _state and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _state.pop("sigterm") or signal.SIG_DFL)
    _state.pop("started_here", None)
