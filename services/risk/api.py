"""The control API: status, positions, decisions; pause, resume, flatten.

Every route needs ``Authorization: Bearer <CONTROL_API_TOKEN>``; the comparison takes
the same time whatever the token's content. ``X-Actor`` names who acts (it goes into
the audit trail with the request's address); routes only translate to the service.
"""

import hmac
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.risk.engine import Conflict
from services.risk.flatten import FlattenJob
from services.risk.service import RiskService
from services.risk.state import TradingState
from shared.logging import get_logger

__all__ = ["control_router"]

_log = get_logger("risk.api")
_bearer = HTTPBearer(auto_error=False, description="CONTROL_API_TOKEN")
_ACTOR = re.compile(r"[\w.@ -]{1,64}")
ProductId = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}-[A-Z]{2,5}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PauseRequest(_Body):
    reason: str = Field(min_length=1, max_length=500, description="Why; kept in the audit.")


class ResumeRequest(_Body):
    reason: str = Field(min_length=1, max_length=500)
    reset_high_water_mark: bool = Field(
        default=False, description="Accept the current drawdown: measure from today's equity."
    )


class FlattenRequest(_Body):
    reason: str = Field(min_length=1, max_length=500)
    products: list[ProductId] | None = Field(
        default=None, min_length=1, description="Products to flatten; omitted: every position."
    )


def _state(state: TradingState) -> dict[str, Any]:
    return {"state": state.name, **state.to_json()}


def bearer_auth(token: SecretStr | None) -> Any:
    """A dependency that admits only the configured token and returns who is acting."""
    expected = token.get_secret_value().encode() if token else None

    async def authorized(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        x_actor: Annotated[str, Header()] = "operator",
    ) -> str:
        given = credentials.credentials.encode() if credentials else b""
        # compare_digest runs even with nothing configured, so timing says nothing either way
        valid = hmac.compare_digest(given, expected or b"\0" * 32) and expected is not None
        host = request.client.host if request.client else "unknown"
        if not valid:
            _log.warning("control request refused", path=request.url.path, client=host,
                         token_configured=expected is not None)  # fmt: skip
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not _ACTOR.fullmatch(x_actor):  # checked only once the caller is known
            raise HTTPException(422, "X-Actor: 1 to 64 letters, digits, spaces or . @ _ -")
        return f"{x_actor} ({host})"

    return authorized


def control_router(service: RiskService, token: SecretStr | None) -> APIRouter:
    Actor = Annotated[str, Depends(bearer_auth(token))]
    router = APIRouter(prefix="/v1", tags=["control"])

    @router.get("/status")
    async def get_status(_actor: Actor) -> dict[str, Any]:
        """Trading state, equity, exposure by theme and asset, PnL today, counters."""
        return {**service.status(), "last_decisions": await service.store.recent_decisions(10)}

    @router.get("/positions")
    async def get_positions(_actor: Actor) -> list[dict[str, Any]]:
        """Every position: base held, average cost, mark, value, PnL and fees."""
        return service.positions()

    @router.get("/decisions")
    async def get_decisions(
        _actor: Actor,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        product_id: ProductId | None = None,
        outcome: Annotated[str | None, Query(pattern="^(APPROVED|RESIZED|REJECTED)$")] = None,
    ) -> list[dict[str, Any]]:
        """Risk's decisions, newest first, with their reasons."""
        return await service.store.recent_decisions(limit, product_id, outcome)

    @router.post("/pause")
    async def pause(body: PauseRequest, actor: Actor) -> dict[str, Any]:
        """No new entries; open entry orders are cancelled; exits and stops keep working."""
        return _state(await service.pause(actor, body.reason))

    @router.post("/resume", responses={409: {"description": "Entries must stay paused."}})
    async def resume(body: ResumeRequest, actor: Actor) -> dict[str, Any]:
        """Entries may open again, unless a flatten runs or a loss limit still holds."""
        try:
            state = await service.resume(actor, body.reason, reset_peak=body.reset_high_water_mark)
        except Conflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return _state(state)

    @router.post("/flatten", status_code=status.HTTP_202_ACCEPTED)
    async def flatten(body: FlattenRequest, actor: Actor) -> dict[str, Any]:
        """Pause, cancel open orders, sell every position in scope until flat."""
        job = await service.flatten(body.products, actor, body.reason)
        return job.to_json()

    @router.get("/flatten/{flatten_id}", responses={404: {"description": "No such flatten."}})
    async def flatten_progress(flatten_id: str, _actor: Actor) -> dict[str, Any]:
        """A flatten's progress per product, until every one is FLAT."""
        job: FlattenJob | None = await service.flatten_job(flatten_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no flatten {flatten_id!r}")
        return job.to_json()

    return router
