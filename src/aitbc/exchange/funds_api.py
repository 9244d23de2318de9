"""Deposit and withdrawal routes (``/api/v1/deposits``, ``/withdrawals``) and the operator's routes."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response

from aitbc.exchange.accounts import Principal
from aitbc.exchange.api import make_auth, qr_response
from aitbc.exchange.bitcoin.addresses import bip21_uri, check_address
from aitbc.exchange.db import schema
from aitbc.exchange.schemas import DepositRequest, SignedWithdrawal, WithdrawalRequest
from aitbc.exchange.service import ExchangeService
from aitbc.market.orderbook import MAX_INT64
from aitbc.protocol.address import is_valid_address
from aitbc.protocol.errors import AitbcError, Forbidden, InvalidAddress


class AssetDisabled(AitbcError):
    reason = "asset_disabled"


def build_funds_router(service: ExchangeService) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    needs = make_auth(service)
    reader, withdrawer = Depends(needs("read")), Depends(needs("withdraw"))
    accounts = service.accounts

    def btc() -> Any:
        if service.bitcoin is None:
            raise AssetDisabled("BTC deposits are off: the operator has not configured bitcoin.xpub")
        return service.bitcoin

    def require_operator(p: Principal) -> None:
        if p.session_id is None or not accounts.get_user(p.user_id).is_operator:
            raise Forbidden("operators only (a logged-in operator session)", reason="operator_only")

    @router.post(
        "/deposits",
        tags=["funds"],
        status_code=201,
        summary="Where to deposit: BTC (the caller's BIP84 address, BIP21 URI, QR codes) or AITBC (address + memo)",
    )
    async def new_deposit(body: DepositRequest, p: Principal = reader) -> dict[str, Any]:
        if body.asset == "AITBC" and service.aitbc is not None:
            return {
                "asset": "AITBC",
                "address": service.aitbc.address,
                "memo": service.aitbc.memo_for(p.user_id),
                "note": "send a transfer to this address with exactly this memo; credited once committed",
            }
        if body.asset != "BTC":
            raise AssetDisabled(f"deposits of {body.asset!r} are not configured on this exchange")
        if body.amount is not None and body.amount <= 0:
            raise AitbcError("amount must be positive", reason="non_positive_amount")
        funds = btc()
        address = funds.deposit_address(p.user_id)
        uri = bip21_uri(address, body.amount, body.label)
        query = "&".join(f"{k}={v}" for k, v in (("amount", body.amount), ("label", body.label)) if v)
        return {
            "asset": "BTC",
            "network": funds.network.value,
            "address": address,
            "uri": uri,
            "confirmations_required": funds.cfg.confirmations,
            "qr_svg": f"/api/v1/deposits/qr.svg{'?' + query if query else ''}",
            "qr_png": f"/api/v1/deposits/qr.png{'?' + query if query else ''}",
        }

    @router.get("/deposits/qr.{fmt}", tags=["funds"], summary="QR code (svg or png) of the caller's BIP21 URI")
    async def deposit_qr(
        fmt: str,
        p: Principal = reader,
        amount: Annotated[int | None, Query(gt=0, le=21 * 10**14)] = None,
        label: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        return qr_response(bip21_uri(btc().deposit_address(p.user_id), amount, label), fmt)

    @router.get("/deposits", tags=["funds"], summary="The caller's deposits with confirmations")
    async def list_deposits(p: Principal = reader) -> dict[str, Any]:
        d = schema.deposits.c
        rows = service.store.fetch_all(
            sa.select(schema.deposits).where(d.user_id == p.user_id).order_by(d.seen_at_ms.desc()).limit(200)
        )
        tips = {
            "BTC": service.bitcoin.tip if service.bitcoin is not None else None,
            "AITBC": service.aitbc.scanned if service.aitbc is not None else None,
        }
        out = []
        for r in rows:
            tip = tips.get(r.asset)
            confirmations = (tip - r.height + 1) if tip is not None and r.height is not None else None
            out.append(
                {
                    "ref": r.ref,
                    "asset": r.asset,
                    "address": r.address,
                    "amount": r.amount,
                    "txid": r.txid,
                    "height": r.height,
                    "confirmations": confirmations,
                    "status": r.status,
                }
            )
        return {"deposits": out}

    @router.post(
        "/withdrawals",
        tags=["funds"],
        status_code=201,
        summary="Withdraw (needs the withdraw scope, 2FA on and a current code)",
    )
    async def withdraw(body: WithdrawalRequest, p: Principal = withdrawer) -> dict[str, Any]:
        accounts.check_rate(p.user_id)
        if not accounts.get_user(p.user_id).totp_enabled:
            raise Forbidden("withdrawals need 2FA: turn it on first", reason="2fa_required")
        # cheap checks before the code is spent: the amount, the asset is served, the address is for its network
        if body.amount <= 0:
            raise AitbcError(f"amount must be positive, got {body.amount}", reason="non_positive_amount")
        if body.amount > MAX_INT64 // 2:
            raise AitbcError("amount too large", reason="amount_too_large")
        if body.asset == "BTC":
            check_address(body.address, btc().network)
            if body.amount < btc().cfg.min_withdrawal_sat:
                raise AitbcError(
                    f"a BTC withdrawal is at least {btc().cfg.min_withdrawal_sat} sat", reason="amount_too_small"
                )
        elif body.asset != "AITBC" or service.aitbc is None:
            raise AssetDisabled(f"withdrawals of {body.asset!r} are not configured on this exchange")
        elif not is_valid_address(body.address):
            raise InvalidAddress("not an AITBC address (ait1…, bech32m)")
        accounts.check_totp(p.user_id, body.totp)
        if body.asset == "BTC":
            result: dict[str, Any] = await btc().request_withdrawal(p, body.address, body.amount)
            return result
        if body.asset == "AITBC" and service.aitbc is not None:
            result = await service.aitbc.request_withdrawal(p, body.address, body.amount)
            return result
        raise AssetDisabled(f"withdrawals of {body.asset!r} are not configured on this exchange")

    @router.get("/withdrawals", tags=["funds"], summary="The caller's withdrawals")
    async def list_withdrawals(p: Principal = reader) -> dict[str, Any]:
        w = schema.withdrawals.c
        rows = service.store.fetch_all(
            sa.select(schema.withdrawals).where(w.user_id == p.user_id).order_by(w.created_at_ms.desc()).limit(200)
        )
        return {
            "withdrawals": [
                {
                    "ref": r.ref,
                    "asset": r.asset,
                    "address": r.address,
                    "amount": r.amount,
                    "fee": r.fee,
                    "status": r.status,
                    "txid": r.txid,
                    "created_at_ms": r.created_at_ms,
                }
                for r in rows
            ]
        }

    # -- operators -------------------------------------------------------------------------------------
    @router.get("/operator/withdrawals", tags=["operator"], summary="Withdrawals by status, with their PSBTs")
    async def operator_withdrawals(
        p: Principal = reader, status: Annotated[str, Query(max_length=20)] = "awaiting_signature"
    ) -> dict[str, Any]:
        require_operator(p)
        w = schema.withdrawals.c
        rows = service.store.fetch_all(
            sa.select(schema.withdrawals).where(w.status == status).order_by(w.created_at_ms)
        )
        return {
            "withdrawals": [
                {
                    "ref": r.ref,
                    "asset": r.asset,
                    "user_id": r.user_id,
                    "address": r.address,
                    "amount": r.amount,
                    "fee": r.fee,
                    "status": r.status,
                    "txid": r.txid,
                    "psbt": r.psbt,
                }
                for r in rows
            ]
        }

    @router.post(
        "/operator/withdrawals/{ref}/signed",
        tags=["operator"],
        summary="The operator's signed PSBT: finalized and broadcast",
    )
    async def operator_signed(ref: str, body: SignedWithdrawal, p: Principal = reader) -> dict[str, Any]:
        require_operator(p)
        result: dict[str, Any] = await btc().submit_signed(ref, body.psbt)
        accounts.audit(p.user_id, "withdrawal_signed", ref=ref)
        return result

    @router.post(
        "/operator/withdrawals/{ref}/cancel",
        tags=["operator"],
        summary="Cancel a withdrawal still awaiting its signature: the hold and the coins are released",
    )
    async def operator_cancel(ref: str, p: Principal = reader) -> dict[str, Any]:
        require_operator(p)
        result: dict[str, Any] = await btc().cancel_withdrawal(ref)
        accounts.audit(p.user_id, "withdrawal_cancelled", ref=ref)
        return result

    @router.get("/operator/users", tags=["operator"], summary="Users with balances and debt flags")
    async def operator_users(
        p: Principal = reader, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> dict[str, Any]:
        require_operator(p)
        rows = service.store.fetch_all(sa.select(schema.users).order_by(schema.users.c.id).limit(limit))
        return {
            "users": [
                {
                    "user_id": r.id,
                    "username": r.username,
                    "totp_enabled": r.totp_enabled,
                    "is_operator": r.is_operator,
                    "balances": service.balances(str(r.id)),
                    "in_debt": service.engine.ledger.is_in_debt(str(r.id)),
                }
                for r in rows
            ]
        }

    @router.get("/operator/invariants", tags=["operator"], summary="Check the journal against the ledger now")
    async def operator_invariants(p: Principal = reader) -> dict[str, Any]:
        require_operator(p)
        await service.check_all_invariants()
        ledger = service.engine.ledger
        return {"ok": True, "deposits": ledger.deposits, "withdrawals": ledger.withdrawals, "fees": ledger.fees}

    return router
