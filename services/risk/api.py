"""The control API: status, positions, decisions; pause, resume, flatten.

Every route needs ``Authorization: Bearer <token>``, a token signed with
``CONTROL_API_TOKEN`` for that one request and used once (:mod:`services.risk.control_auth`).
Its ``sub`` names who acts; that goes into the audit trail with the request's address.
Routes only translate to the service.
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from services.risk.control_auth import ControlTokenVerifier, Refused, Unavailable
from services.risk.engine import Conflict
from services.risk.flatten import FlattenJob
from services.risk.service import RiskService
from services.risk.state import TradingState
from shared.logging import get_logger

__all__ = ["control_router"]

_log = get_logger("risk.api")
_bearer = HTTPBearer(auto_error=False, description="a token signed with CONTROL_API_TOKEN")
ProductId = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}-[A-Z]{2,5}$")]
# As POST /v1/flatten returns them (flt-<hex>); anything else is looked up nowhere.
FlattenId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Postgres text cannot hold a NUL character: refused here, not by the audit write.
Reason = Annotated[
    str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]*$",
               description="Why; kept in the audit. Any text without NUL characters."),
]  # fmt: skip


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PauseRequest(_Body):
    reason: Reason


class ResumeRequest(_Body):
    reason: Reason
    reset_high_water_mark: bool = Field(
        default=False, description="Accept the current drawdown: measure from today's equity."
    )


class FlattenRequest(_Body):
    reason: Reason
    products: list[ProductId] | None = Field(
        default=None, min_length=1, description="Products to flatten; omitted: every position."
    )


def _state(state: TradingState) -> dict[str, Any]:
    return {"state": state.name, **state.to_json()}


def _authorizing_route(verifier: ControlTokenVerifier) -> type[APIRoute]:
    """Routes that check the token before anything else, the body included: FastAPI reads
    and parses the body before it runs any dependency, so a request without a valid token
    and a body that is not JSON would be answered 400 or 422 instead of 401."""

    class AuthorizingRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def authorized_first(request: Request) -> Response:
                request.state.control_actor = await _authorize(verifier, request)
                return await handle(request)

            return authorized_first

    return AuthorizingRoute


async def _authorize(verifier: ControlTokenVerifier, request: Request) -> str:
    """Admit only a fresh token signed for this request; who acts, with the request's address."""
    host = request.client.host if request.client else "unknown"
    try:
        credentials = await _bearer(request)
        if credentials is None:
            raise Refused("missing bearer token")
        # the decoded path, whole: what a client signs (request.url would re-parse a
        # decoded "?" in a segment as the start of a query)
        accepted = await verifier.verify(
            credentials.credentials, request.method, request.scope["path"]
        )
    except Refused as exc:
        _log.warning("control request refused", method=request.method,
                     path=request.url.path, client=host, reason=str(exc),
                     token_configured=verifier.configured)  # fmt: skip
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None
    except Unavailable as exc:
        _log.warning("control request not checked", path=request.url.path, error=str(exc))
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return f"{accepted.actor} ({host})"


def _actor(
    request: Request,
    _bearer_token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Who acts, as the route checked it. The bearer dependency only declares the scheme in
    the OpenAPI document; the check itself ran before the body was read."""
    actor: str = request.state.control_actor
    return actor


def control_router(service: RiskService, verifier: ControlTokenVerifier) -> APIRouter:
    Actor = Annotated[str, Depends(_actor)]
    router = APIRouter(prefix="/v1", tags=["control"], route_class=_authorizing_route(verifier))

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
    async def flatten_progress(flatten_id: FlattenId, _actor: Actor) -> dict[str, Any]:
        """A flatten's progress per product, until every one is FLAT."""
        job: FlattenJob | None = await service.flatten_job(flatten_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no flatten {flatten_id!r}")
        return job.to_json()

    return router
