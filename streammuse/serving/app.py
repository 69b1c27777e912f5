"""The HTTP API (FastAPI) and its Ray Serve deployment.

One deployment, the FastAPI ingress, holds the engine (loaded in ``__init__``) and the
session store: a session's KV cache must sit beside the model that extends it, so a
separate model deployment would need a second sticky hop and gain nothing. Requests are
routed by the ``x-session-id`` header with Ray's consistent-hash request router
(``ray.serve.experimental.consistent_hash_router``, experimental in Ray 2.60, hence the
pinned Ray version): only the sessions of an added or removed replica move, and a
replica that does not hold a session answers ``unknown_session`` so the client re-sends
its context.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from streammuse.contract import (
    MAX_GEN_LEN,
    SESSION_HEADER,
    ApiError,
    CreateSessionRequest,
    CreateSessionResponse,
    ErrorResponse,
    InferRequest,
    InferResponse,
)
from streammuse.core.drivers import RealtimeDriver
from streammuse.core.session_ids import SECRET_ENV
from streammuse.core.sessions import CoreOptions, SessionCore
from streammuse.serving.autoscaling import CAPACITY_METRIC, DEMAND_METRIC, POLICY_PATH, ROOM_STAT
from streammuse.serving.capacity import Plan, RayLimits, ladder, ray_limits, sessions_for
from streammuse.serving.capacity_probe import measure_step_ms
from streammuse.serving.jam import mount_jam

TOKEN_ENV = "STREAMMUSE_TOKEN"
MAX_BODY_BYTES = 1 << 20  # a 4096-tick context is ~200 kB of JSON
ROUTER_CLASS = "streammuse.serving.router.FailoverHashRouter"
ROUTING_STATS_PERIOD_S = 1.0
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_long", "too_short"}
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 500, 503)}
RETRY_AFTER_S = 2  # a refused session (429, 503) asks again after about a bar at 120 BPM
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


@dataclass
class DeployOptions:
    """How the Serve app is deployed (autoscaling, resources, session bounds)."""

    min_replicas: int = 1
    max_replicas: int = 4
    # Ray Serve's limits; None: derived from the replica's capacity (serving/capacity.py).
    target_ongoing_requests: float | None = None
    max_ongoing_requests: int | None = None
    max_queued_requests: int | None = None
    num_gpus: float = 0.0  # 1 on GPU clusters
    num_cpus: float = 1.0
    checkpoint: str | None = None  # None: the shipped checkpoint
    random_weights: bool = False  # tests: StreamingEngine.random('tiny')
    session_ttl_s: float = 600.0
    # Sessions a replica carries; 0: each replica measures it at start (serving/capacity.py)
    # for the plan below (sessions at plan_bpm asking plan_gen_len ticks every plan_interval).
    max_sessions: int = 0
    plan_bpm: float = 120.0
    plan_interval: int = 1
    plan_gen_len: int = 3
    max_sessions_per_client: int | None = None  # None: half of max_sessions; 0: no per-client bound
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    route_prefix: str = "/"
    name: str = "streammuse"
    # Signs session ids; every replica must share it. None: $STREAMMUSE_SESSION_SECRET
    # (a Kubernetes Secret), else one generated per `serve` / `deploy --cluster local`.
    session_secret: str | None = None

    @property
    def cpu_only(self) -> bool:
        """True when no GPU is asked for."""
        return self.num_gpus == 0

    def plan(self) -> Plan:
        """The load a replica is sized for."""
        return Plan(self.plan_bpm, self.plan_interval, self.plan_gen_len)

    def ray_limits(self) -> RayLimits:
        """Ray Serve's limits: the flags given, else derived from ``max_sessions`` (or,
        while replicas measure their own, from ``max_batch_size``, their upper bound)."""
        derived = ray_limits(self.max_sessions or self.max_batch_size)
        return RayLimits(self.max_ongoing_requests or derived.max_ongoing_requests,
                         derived.max_queued_requests if self.max_queued_requests is None else self.max_queued_requests,
                         self.target_ongoing_requests or derived.target_ongoing_requests)

    def deployment_options(self) -> dict:
        """The Serve deployment's options (``serve.deployment`` / serveConfigV2)."""
        limits = self.ray_limits()
        return {
            "max_ongoing_requests": limits.max_ongoing_requests,
            "max_queued_requests": limits.max_queued_requests,
            # Past the queue (a burst beyond what capacity.ray_limits sizes it for), Ray's
            # proxy answers in plain text; with Retry-After at least, as our own 503s do.
            "backpressure_config": {"status_code": 503, "retry_after_s": float(RETRY_AFTER_S)},
            "autoscaling_config": {
                "min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "target_ongoing_requests": limits.target_ongoing_requests,
                "upscale_delay_s": 2.0, "downscale_delay_s": 120.0,
                # Scale on sessions (live + refused, serving/autoscaling.py), reported each second.
                "policy": {"policy_function": POLICY_PATH}, "metrics_interval_s": 1.0, "look_back_period_s": 5.0},
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
        }

    def core_options(self) -> CoreOptions:
        """The session core's bounds on one replica."""
        return CoreOptions(session_ttl_s=self.session_ttl_s, max_sessions=self.max_sessions,
                           max_batch_size=self.max_batch_size, max_wait_ms=self.max_wait_ms,
                           max_sessions_per_client=self.max_sessions_per_client)


# Ray Serve hands each replica its own copy of the FastAPI app, so a replica's
# __init__ publishes its driver here rather than on the app object it closed over.
_REPLICA: dict = {}


def _state(request: Request, key: str):
    value = getattr(request.app.state, key, None)
    return value if value is not None else _REPLICA.get(key)


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(ErrorResponse(code=code, detail=detail).model_dump(), status_code=status)


def _check_token(request: Request) -> None:
    token = _state(request, "token")
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token")


def _client(request: Request) -> str | None:
    """Who asks, for the per-client bounds (core/admission.py): the remote address. The
    bearer token is one per deployment, so it cannot tell users apart."""
    return request.client.host if request.client is not None else None


def _check_session_header(request: Request, session_id: str) -> None:
    """The affinity header routes the request; a different id in the path would run the
    session on a replica that the router did not pick for it (a silent fork)."""
    header = request.headers.get(SESSION_HEADER)
    if header is not None and header != session_id:
        raise ApiError(400, "session_mismatch", f"{SESSION_HEADER} header and the path name different sessions")


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as an ErrorResponse: ApiError, and FastAPI's own validation errors."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        response = _error(exc.status, exc.code, exc.detail)
        if exc.status in (429, 503):
            response.headers["retry-after"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        """Starlette's and FastAPI's own refusals (no such path or method, a body that
        cannot be parsed) as ErrorResponses too."""
        code = _HTTP_CODES.get(exc.status_code, "internal_error" if exc.status_code >= 500 else "bad_request")
        response = _error(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. a 405's Allow
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"msg": "invalid request", "loc": (), "type": ""}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        if first.get("type") == "json_invalid":
            return _error(400, "bad_request", f"malformed JSON: {first['msg']}")
        code = "out_of_range" if first.get("type") in _RANGE_ERRORS else "bad_request"
        return _error(422, code, detail)


def create_app(driver=None, token: str | None = None) -> FastAPI:
    """The FastAPI app over a session-core driver (``RealtimeDriver`` when serving,
    ``VirtualDriver`` in a simulation); ``driver`` and ``token`` may be set later on
    ``app.state``."""
    app = FastAPI(title="StreamMUSE", version="1", description="Frame-synchronous streaming accompaniment (docs/design.md section 3).")
    app.state.driver, app.state.token = driver, token
    app.state.replica = "local" if driver is not None else None
    auth = [Depends(_check_token)]

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path in DOCS_PATHS:  # the API's description follows the token too
            try:
                _check_token(request)
            except ApiError as exc:
                return _error(exc.status, exc.code, exc.detail)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        if length is None and request.method == "POST" and len(await request.body()) > MAX_BODY_BYTES:
            return _error(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        response = await call_next(request)
        response.headers["x-streammuse-replica"] = _state(request, "replica")  # which replica answered
        return response

    _add_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness and readiness (no token needed)."""
        return {"status": "ok"}

    @app.get("/v1/model", dependencies=auth, responses=_ERRORS)
    async def model_info(request: Request) -> dict:
        """The served model's id and limits."""
        driver = _state(request, "driver")
        engine = driver.engine
        return {"model_id": engine.model_id, "max_gen_len": MAX_GEN_LEN, "device": str(engine.device),
                "max_sessions": driver.core.options.max_sessions, "context_ticks": engine.config.steady_context_ticks,
                "window_ticks": engine.config.window_ticks}

    @app.post("/v1/sessions", dependencies=auth, responses=_ERRORS)
    async def create_session(body: CreateSessionRequest, request: Request) -> CreateSessionResponse:
        """Open a session, admitted here (503 overloaded / 429 too_many_sessions refuse it)."""
        return _state(request, "driver").create(body, _client(request))

    @app.post("/v1/sessions/{session_id}/infer", dependencies=auth, responses=_ERRORS)
    async def infer(session_id: str, body: InferRequest, request: Request) -> InferResponse:
        """Accompaniment for ticks s .. s+GL-1 (or ``superseded``); 404 unknown_session: re-send ``context``."""
        _check_session_header(request, session_id)
        return await _state(request, "driver").infer(session_id, body, _client(request))

    @app.delete("/v1/sessions/{session_id}", dependencies=auth, status_code=204, responses=_ERRORS)
    async def close_session(session_id: str, request: Request) -> None:
        """Close a session."""
        _check_session_header(request, session_id)
        _state(request, "driver").close(session_id, _client(request))

    mount_jam(app, auth)  # the jam page (streammuse.serving.jam)
    return app


def load_engine(options: DeployOptions):
    """The engine a replica serves (random tiny weights when ``options.random_weights``)."""
    from streammuse.model.engine import StreamingEngine

    device = "cuda" if options.num_gpus > 0 else "cpu"
    if options.random_weights:
        return StreamingEngine.random("tiny", seed=0, device=device)
    return StreamingEngine.load(options.checkpoint, device=device)


def _replica_driver() -> RealtimeDriver:
    """This replica's driver (published by its ``__init__`` in this module's ``_REPLICA``;
    looked up by module, as Ray runs a copy of the deployment class)."""
    from streammuse.serving import app as this_module

    return this_module._REPLICA["driver"]


def build_app(args: dict | None = None):
    """Ray Serve application builder (``import_path: streammuse.serving.app:build_app``).

    ``args``: DeployOptions fields (serveConfigV2 ``args``).
    """
    from ray import serve
    from ray.serve.config import AutoscalingConfig, BackpressureConfig, RequestRouterConfig

    options = DeployOptions(**(args or {}))
    if options.session_secret is None and not os.environ.get(SECRET_ENV):
        options.session_secret = secrets.token_hex(32)  # generated once, handed to every replica
    fastapi_app = create_app()

    deployment = options.deployment_options()

    @serve.deployment(
        name="StreamMuseServer",
        max_ongoing_requests=deployment["max_ongoing_requests"],
        max_queued_requests=deployment["max_queued_requests"],
        backpressure_config=BackpressureConfig(**deployment["backpressure_config"]),
        ray_actor_options=deployment["ray_actor_options"],
        autoscaling_config=AutoscalingConfig(**deployment["autoscaling_config"]),
        request_router_config=RequestRouterConfig(
            request_router_class=ROUTER_CLASS,
            # 0 fallbacks: strict affinity; a busy replica queues, and supersedes stale work.
            request_router_kwargs={"num_virtual_nodes": 100, "num_fallback_replicas": 0},
            # each replica's room (record_routing_stats) for placing creates (serving/router.py)
            request_routing_stats_period_s=ROUTING_STATS_PERIOD_S, request_routing_stats_timeout_s=5.0),
    )
    @serve.ingress(fastapi_app)
    class StreamMuseServer:
        def __init__(self, options_dict: dict) -> None:
            opts = DeployOptions(**options_dict)
            from streammuse.serving import app as this_module

            engine = load_engine(opts)
            if opts.max_sessions == 0:  # measure what this replica carries
                table = measure_step_ms(engine, opts.plan(), ladder(opts.max_batch_size), create_app)
                opts.max_sessions = sessions_for(table, opts.plan(), opts.max_batch_size)
            replica_id = serve.get_replica_context().replica_id
            # The replica's ids carry its unique_id: the router sends their requests here.
            core = SessionCore(engine, opts.core_options(), opts.session_secret, tag=replica_id.unique_id)
            this_module._REPLICA.update(driver=RealtimeDriver(core), token=os.environ.get(TOKEN_ENV) or None,
                                        replica=replica_id.to_full_id_str())

        async def record_routing_stats(self) -> dict[str, int]:
            """What the router places creates by (serving/router.py): the sessions this
            replica would still admit."""
            driver = _replica_driver()
            return {ROOM_STAT: driver.core.room(driver.now_s())}

        async def record_autoscaling_stats(self) -> dict[str, float]:
            """What the session policy scales on (serving/autoscaling.py): this replica's
            demand (live sessions and those refused for room that still ask) and capacity."""
            driver = _replica_driver()
            return {DEMAND_METRIC: float(driver.core.demand(driver.now_s())),
                    CAPACITY_METRIC: float(driver.core.options.max_sessions)}

    return StreamMuseServer.bind(asdict(options))
