"""``GET /api/v1/account``: the calling API key's deposit, as this coordinator counts it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aitbc.coordinator.api.deps import Client, Service

router = APIRouter(prefix="/api/v1", tags=["account"])


@router.get(
    "/account",
    summary="Your deposit: balance, reserved, pending, spent, cap",
    description="balance: on chain (at `height`); reserved: worst-case charges of your jobs in flight; pending: "
    "charges of completed jobs not yet settled on chain; available: what a new job may reserve (also within the "
    "cap's room this period). 402 when the key has no deposit.",
)
async def get_account(client: Client, service: Service) -> dict[str, Any]:
    return await service.account_view(client)
