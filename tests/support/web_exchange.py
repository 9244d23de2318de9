"""A real exchange for the web app's browser tests (web/e2e): ``python -m support.web_exchange --port P
--origin http://127.0.0.1:W`` (with tests/ on the path).

It runs ``aitbc.exchange`` (its real app and service, SQLite in a temporary directory) with BTC deposits
on the regtest double of tests/support/bitcoin_regtest.py (real addresses from a BIP84 xpub, real
blocks), allows the web app's origin (CORS), and puts a market maker on the book: a user funded with
AITBC through the same command path as deposits (AITBC deposits over the chain are not in the exchange
yet), resting an ask and a bid. It prints one JSON line when ready, then reads commands on stdin:

    pay ADDRESS SATS    send SATS to ADDRESS in a new block (a user's BTC deposit); prints ``paid TXID``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from embit import bip32, bip39
from embit.networks import NETWORKS

from aitbc.exchange.app import create_app
from aitbc.exchange.config import ExchangeSettings
from aitbc.exchange.service import ExchangeService
from aitbc.market.trading import Deposit
from support.bitcoin_regtest import RegtestChain, regtest_server

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
ROOT = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(MNEMONIC), version=NETWORKS["regtest"]["xprv"])
XPUB = f"[{ROOT.my_fingerprint.hex()}/84h/1h/0h]{ROOT.derive('m/84h/1h/0h').to_public().to_string()}"
AIT = 1_000_000
MAKER = ("market-maker", "maker password 123")
ASK = (2_000, 10 * AIT)  # sells 10 AITBC at 2,000 sat each
BID = (1_000, 2 * AIT)  # buys 2 AITBC at 1,000 sat each


async def add_maker(base: str, service: ExchangeService) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        (await http.post("/api/v1/users", json={"username": MAKER[0], "password": MAKER[1]})).raise_for_status()
        login = await http.post("/api/v1/sessions", json={"username": MAKER[0], "password": MAKER[1]})
        login.raise_for_status()
        session = login.json()
        await service.submit(Deposit(str(session["user_id"]), "AITBC", 100 * AIT, "web-e2e-maker-ait"))
        await service.submit(Deposit(str(session["user_id"]), "BTC", 10_000_000, "web-e2e-maker-btc"))
        headers = {"Authorization": f"Bearer {session['token']}"}
        for side, (price, quantity) in (("sell", ASK), ("buy", BID)):
            order = {"side": side, "type": "limit", "quantity": quantity, "price": price}
            (await http.post("/api/v1/orders", json=order, headers=headers)).raise_for_status()


async def commands(chain: RegtestChain) -> None:
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "pay":
            txid = await asyncio.to_thread(chain.send, parts[1], int(parts[2]))
            await asyncio.to_thread(chain.mine, 1)
            print(f"paid {txid}", flush=True)


async def serve(args: argparse.Namespace, chain: RegtestChain, rpc_url: str, data_dir: Path) -> None:
    settings = ExchangeSettings(
        data_dir=data_dir,
        host="127.0.0.1",
        port=args.port,
        cors_origins=[args.origin],
        bitcoin={"xpub": XPUB, "backend": "core", "rpc_url": rpc_url, "confirmations": 1, "poll_seconds": 0.3},
    )
    service = ExchangeService(settings)
    config = uvicorn.Config(create_app(settings, service), host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{args.port}"
    await add_maker(base, service)
    ready: dict[str, Any] = {"ready": True, "url": base, "ask": ASK, "bid": BID}
    print(json.dumps(ready), flush=True)
    await commands(chain)
    server.should_exit = True
    await task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin", required=True, help="the web app's origin, allowed by CORS")
    args = parser.parse_args()
    with regtest_server() as (chain, rpc_url, _), tempfile.TemporaryDirectory(prefix="aitbc-web-exchange-") as tmp:
        asyncio.run(serve(args, chain, rpc_url, Path(tmp)))


if __name__ == "__main__":
    main()
