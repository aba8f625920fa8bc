"""The FastAPI application: ``/api/v1`` routers of every feature, health and OpenAPI docs."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from qamqor import __version__
from qamqor.audit.api import router as audit_router
from qamqor.kit.db import get_engine
from qamqor.proactive.api import router as proactive_router
from qamqor.proactive.metrics import router as metrics_router
from qamqor.profiles.api import router as profiles_router
from qamqor.quality.api import router as quality_router
from qamqor.registry.api import router as registry_router
from qamqor.rules.api import router as rules_router
from qamqor.wallet.api import router as wallet_router
from qamqor.wallet.reports_api import router as wallet_reports_router
from qamqor.web.auth import declare_route_actions, install_privacy


def create_app() -> FastAPI:
    app = FastAPI(
        title="Qamqor",
        version=__version__,
        description="Open platform for proactive, targeted social protection.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    # Every route declares its policy action (docs/privacy.md); routers written before the
    # policy get theirs from qamqor.web.auth.ROUTE_ACTIONS until they declare their own.
    declare_route_actions([registry_router, audit_router, profiles_router, quality_router])
    install_privacy(app)
    app.include_router(registry_router, prefix="/api/v1")
    app.include_router(audit_router, prefix="/api/v1")
    app.include_router(profiles_router, prefix="/api/v1")
    app.include_router(quality_router, prefix="/api/v1")
    app.include_router(rules_router, prefix="/api/v1")
    app.include_router(proactive_router, prefix="/api/v1")
    app.include_router(wallet_router, prefix="/api/v1")
    app.include_router(wallet_reports_router, prefix="/api/v1")
    app.include_router(metrics_router)

    @app.get("/healthz", tags=["ops"], summary="Liveness and database reachability")
    def healthz() -> JSONResponse:
        engine = get_engine()
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": engine.dialect.name,
                    "error": type(exc).__name__,
                },
                status_code=503,
            )
        return JSONResponse(
            {"status": "ok", "database": engine.dialect.name, "version": __version__}
        )

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def index() -> str:
        return (
            "<!doctype html><meta charset=utf-8><title>Qamqor</title>"
            "<h1>Qamqor</h1><ul>"
            "<li><a href=/docs>API documentation (OpenAPI)</a></li>"
            "<li><a href=/api/v1/registry/batches>Ingested batches</a></li>"
            "<li><a href=/api/v1/registry/sources>Source registries</a></li>"
            "<li><a href=/healthz>Health</a></li></ul>"
        )

    return app
