"""The ASGI application: routes only (the WebSocket, health, readiness, metrics, static files).

``create_app(settings)`` returns a Starlette app; mount it in your own Starlette app or run it
with ``glueberry-gateway --config gateway.toml``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from .gateway import Gateway
from .settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings, *, gateway: Gateway | None = None) -> Starlette:
    gw = gateway or Gateway(settings)

    async def websocket_endpoint(websocket: WebSocket) -> None:
        await gw.handle(websocket)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if gw.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ready", "sockets": len(gw.sockets)})

    async def metrics(request: Request) -> Response:
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.drain()

    routes: list[Route | WebSocketRoute | Mount] = [
        WebSocketRoute(settings.path, websocket_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    if settings.static_dir is not None:
        routes.append(Mount("/", StaticFiles(directory=settings.static_dir, html=True)))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gw
    return app
