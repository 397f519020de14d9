"""All routers of the API."""

from __future__ import annotations

from fastapi import APIRouter

from recsys_app.api.routes import admin, events, health, items, recommendations

api_router = APIRouter()
api_router.include_router(recommendations.router)
api_router.include_router(items.router)
api_router.include_router(events.router)
api_router.include_router(admin.router)
api_router.include_router(health.router)
