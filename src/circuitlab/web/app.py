"""The FastAPI app: a static page of our own (plotly.js served locally from the installed package) and a
JSON API over `Lab`. Nothing on the page reaches outside the server (a Content-Security-Policy says so).

API: GET /api/info; POST /api/predictions {prompt, top_k}; POST /api/attention {prompt, layer, head};
GET /api/census; POST /api/patching {clean, corrupted, answer, distractor, direction}; POST /api/circuit {method}.
Errors: 422 bad input (with what would be right), 413 body too large, 503 busy, 504 over the time limit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .lab import MAX_TOP_K, InputError, Lab
from .limits import BodySizeLimit, Busy, ComputationTimeout, Limits, Worker, add_deadline_hooks

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'"
)


class PredictionsRequest(BaseModel):
    prompt: str
    top_k: int = Field(5, ge=1, le=MAX_TOP_K)


class AttentionRequest(BaseModel):
    prompt: str
    layer: int = 0
    head: int = 0


class PatchingRequest(BaseModel):
    clean: str
    corrupted: str
    answer: str
    distractor: str
    direction: Literal["denoise", "noise"] = "denoise"


class CircuitRequest(BaseModel):
    method: Literal["eap", "eap-ig", "acdc"] = "eap-ig"


@functools.cache
def plotly_js() -> str:
    """plotly.js from the installed `plotly` package (never a CDN)."""
    import plotly.offline

    return plotly.offline.get_plotlyjs()


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(lab: Lab, limits: Limits | None = None, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The web lab for `lab`'s model under `limits` (body size, time per computation, queue length).

    `allowed_hosts`: Host headers accepted (others get 400), e.g. ["127.0.0.1", "localhost"] for a server on
    the loopback interface, so that a web page elsewhere cannot reach it through DNS rebinding."""
    limits = limits or Limits()
    add_deadline_hooks(lab.model)
    worker = Worker(limits)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        worker.close()

    app = FastAPI(title="circuitlab web lab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.lab, app.state.limits, app.state.worker = lab, limits, worker

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(err)}, status_code=422)

    async def compute(fn: Callable[[], Any]) -> Any:
        try:
            return await worker.run(fn)
        except InputError as err:
            return JSONResponse({"detail": str(err)}, status_code=422)
        except Busy as err:
            return JSONResponse(
                {"detail": f"the server is busy ({err}): try again in a moment"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        except ComputationTimeout:
            return JSONResponse(
                {
                    "detail": f"the computation took longer than the time limit of {limits.time_limit_s:g} s "
                    "(circuitlab serve --time-limit): try a shorter prompt or a smaller model"
                },
                status_code=504,
            )

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    async def plotly() -> Response:
        return Response(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        data = lab.info()
        data["limits"] = {"max_body_bytes": limits.max_body_bytes, "time_limit_s": limits.time_limit_s}
        return data

    @app.post("/api/predictions")
    async def predictions(req: PredictionsRequest) -> Any:
        return await compute(lambda: lab.predictions(req.prompt, req.top_k))

    @app.post("/api/attention")
    async def attention(req: AttentionRequest) -> Any:
        return await compute(lambda: lab.attention(req.prompt, req.layer, req.head))

    @app.get("/api/census")
    async def census() -> Any:
        return await compute(lab.census)

    @app.post("/api/patching")
    async def patching(req: PatchingRequest) -> Any:
        return await compute(lambda: lab.patching(req.clean, req.corrupted, req.answer, req.distractor, req.direction))

    @app.post("/api/circuit")
    async def circuit(req: CircuitRequest) -> Any:
        return await compute(lambda: lab.circuit(req.method))

    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app
