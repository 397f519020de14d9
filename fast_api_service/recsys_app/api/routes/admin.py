"""Administration: reload the published tables now instead of at the next poll."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from recsys_app.api.deps import ServiceDep, require_api_key
from recsys_app.api.routes.events import AUTH_RESPONSES
from recsys_app.schemas import ReloadOutcome

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_api_key)])


@router.post("/reload", response_model=ReloadOutcome, responses=AUTH_RESPONSES)
def reload_tables(service: ServiceDep) -> ReloadOutcome:
    """Load newly published table versions and swap them in without a restart. Needs ``X-API-Key``."""
    result = service.reload()
    return ReloadOutcome(changed=result.changed, versions=result.versions)
