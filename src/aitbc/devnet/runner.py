"""Start, watch and stop the devnet's processes."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aitbc.chain.genesis import Genesis, load_genesis
from aitbc.client.node import NodeClient
from aitbc.devnet.config import DevnetInfo, write_devnet_info
from aitbc.devnet.network import ValidatorNetwork
from aitbc.devnet.process import ManagedProcess as ManagedProcess
from aitbc.devnet.process import pid_alive as pid_alive
from aitbc.devnet.process import wait_for_miner
from aitbc.node.init import init_data_dir
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.tx import Transfer, sign_tx
from aitbc.runtime.files import atomic_write
from aitbc.runtime.keyfile import read_keyfile, write_keyfile

if TYPE_CHECKING:
    from aitbc.coordinator.config import CoordinatorSettings

COORDINATOR_FUNDS = 1_000 * BASE_UNITS_PER_AITBC
"""Enough for a million settle / refund tx fees at the devnet's minimum fee."""
CLIENT_FUNDS = 10_000 * BASE_UNITS_PER_AITBC
DEVNET_DEPOSIT = 1_000 * BASE_UNITS_PER_AITBC
"""What the devnet client keeps in its delegated deposit with the coordinator (topped up to it at each start)."""
DEVNET_DEPOSIT_CAP = DEVNET_DEPOSIT
DEVNET_DEPOSIT_PERIOD = 86_400
"""The coordinator may spend at most ``DEVNET_DEPOSIT_CAP`` of it per this many blocks (a day of 1 s blocks)."""
DEVNET_MINER_PRICE = 100
"""Base units per token: 0.0001 AITBC, so a demo job's payment and protocol fee show."""


@dataclass
class Devnet:
    data_dir: Path
    rpc_port: int = 9080
    ws_port: int = 9081
    p2p_port: int = 9082
    coordinator_port: int = 8011
    poolhub_port: int | None = 8012
    """The pool hub (miner registry, scoring, match explanations); None: the coordinator matches in process."""
    exchange_port: int | None = 8014
    """The BTC <-> AITBC exchange (``aitbc exchange run``; BTC deposits off until an xpub is configured)."""
    web_port: int | None = 8015
    """The web app (``aitbc web serve``), started when it is built (web/dist); None: not started."""
    miner_backend: str | None = "builtin"
    """Backend of the devnet's one miner (None: no miner)."""
    host: str = "127.0.0.1"
    processes: list[ManagedProcess] = field(default_factory=list)
    validators: int = 1
    """More than one: a BFT network of validator processes (``aitbc.devnet.network``); clients use node 0."""
    network: ValidatorNetwork | None = None
    coordinators: int = 1
    """Coordinator replicas (more than one needs ``database_url`` on PostgreSQL); replica i listens on
    ``coordinator_port + 10 * i`` and shares the first one's data dir (its key and blobs)."""
    database_url: str | None = None
    """The coordinator's database (SQLAlchemy URL); None: SQLite in its data dir."""
    throwaway_postgres: bool = False
    """Start a throwaway PostgreSQL for the coordinator (``aitbc.devnet.postgres``), removed at stop."""
    _postgres: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _postgres_pid: int | None = None

    @property
    def web_url(self) -> str | None:
        return None if self.web_port is None else f"http://{self.host}:{self.web_port}"

    def cors_env(self, service: str) -> dict[str, str]:
        """Let the web app's origin call ``service`` from the browser."""
        if self.web_url is None:
            return {}
        return {f"AITBC_{service.upper()}_CORS_ORIGINS": json.dumps([self.web_url])}

    @property
    def coordinator_dir(self) -> Path:
        return self.data_dir / "coordinator"

    @property
    def miner_dir(self) -> Path:
        return self.data_dir / "miner"

    @property
    def client_key_path(self) -> Path:
        return self.data_dir / "keys" / "client.key"

    def client_key(self) -> KeyPair:
        """The devnet client's key: it signs the escrows that pay for jobs (funded by ``fund``)."""
        if self.client_key_path.exists():
            return read_keyfile(self.client_key_path)
        key = KeyPair.generate()
        write_keyfile(self.client_key_path, key)
        return key

    def coordinator_key(self) -> KeyPair:
        from aitbc.coordinator.app import load_or_create_key

        self.coordinator_dir.mkdir(parents=True, exist_ok=True)
        return load_or_create_key(self.coordinator_settings())

    def coordinator_settings(self) -> CoordinatorSettings:
        from aitbc.coordinator.config import CoordinatorSettings

        return CoordinatorSettings(data_dir=self.coordinator_dir, database_url=self.database_url)

    @property
    def coordinator_ports(self) -> list[int]:
        return [self.coordinator_port + 10 * i for i in range(self.coordinators)]

    def client_api_key(self) -> str:
        """The devnet client's API key, bound to the client key's address; created once, kept in the
        coordinator's directory (and made again if an older devnet's key is not bound)."""
        from aitbc.coordinator.app import open_repo
        from aitbc.coordinator.auth import new_api_key, parse_api_key

        client = self.client_key().address
        path = self.coordinator_dir / "client.apikey"
        repo = open_repo(self.coordinator_settings())
        try:
            if path.exists():
                token = path.read_text().strip()
                parsed = parse_api_key(token)
                row = None if parsed is None else repo.get_api_key(parsed[0])
                if row is not None and row.client == client and not row.revoked:
                    return token
            token, row = new_api_key("devnet", client, 1000.0, 2000)
            repo.insert_api_key(row)
        finally:
            repo.engine.dispose()
        atomic_write(path, token.encode() + b"\n", mode=0o600)
        return token

    def ensure_deposit(self, rpc_url: str, api_key: str) -> str:
        """The client's delegated deposit with the devnet coordinator, funded, and the API key bound to it:
        the documented plain ``POST /api/v1/jobs`` is then paid from it (no escrow, no wait for a block)."""
        from aitbc.client.deposit import open_deposit, top_up_deposit
        from aitbc.coordinator.app import open_repo
        from aitbc.coordinator.auth import parse_api_key
        from aitbc.coordinator.db.deposit_repo import DepositRepo

        parsed = parse_api_key(api_key)
        if parsed is None:  # pragma: no cover - the key was made here
            raise ConfigError("the devnet API key is malformed")
        key_id = parsed[0]
        client, coordinator = self.client_key(), self.coordinator_key().address
        repo = open_repo(self.coordinator_settings())
        deposits = DepositRepo(repo.engine)
        try:
            deposit_id = deposits.get_binding(key_id)
            with NodeClient(rpc_url) as node:
                deposit = None if deposit_id is None else node.get_verified_deposit(deposit_id)[0]
                if (
                    deposit_id is None
                    or deposit is None
                    or deposit.owner != client.address
                    or deposit.coordinator != coordinator
                ):
                    deposit_id = open_deposit(
                        node,
                        client,
                        coordinator,
                        DEVNET_DEPOSIT,
                        cap_per_period=DEVNET_DEPOSIT_CAP,
                        period_blocks=DEVNET_DEPOSIT_PERIOD,
                    ).deposit_id
                    deposits.bind(key_id, deposit_id, int(time.time() * 1000))
                elif deposit.balance < DEVNET_DEPOSIT // 2:
                    top_up_deposit(node, client, deposit_id, DEVNET_DEPOSIT - deposit.balance)
        finally:
            repo.engine.dispose()
        assert deposit_id is not None
        return deposit_id

    def fund(self, rpc_url: str) -> None:
        """The faucet tops up the coordinator (it pays the settle / refund tx fees) and the client."""
        faucet = read_keyfile(self.node_dir / "faucet.key")
        wanted = [(self.coordinator_key().address, COORDINATOR_FUNDS), (self.client_key().address, CLIENT_FUNDS)]
        with NodeClient(rpc_url) as node:
            chain_id = node.get_chain_info()["chain_id"]
            nonce = node.next_nonce(faucet.address)
            hashes = []
            for address, amount in wanted:
                if int(node.get_account(address)["balance"]) >= amount // 2:
                    continue
                tx = Transfer(
                    chain_id=chain_id,
                    sender=faucet.address,
                    nonce=nonce,
                    fee=1000,
                    recipient=address,
                    amount=amount,
                    memo="devnet funds",
                )
                hashes.append(node.send_tx(sign_tx(tx, faucet)))
                nonce += 1
            for tx_hash in hashes:
                status = node.wait_for_tx(tx_hash, timeout=30)
                if status["status"] != "committed":
                    raise ConfigError(f"funding tx {tx_hash} was {status['status']}: {status.get('reason')}")

    @property
    def node_dir(self) -> Path:
        if self.validators > 1:
            return self.data_dir / "validators" / "node0"
        return self.data_dir / "node"

    def prepare(self) -> bool:
        """Initialize on first use; return True when this call created the chain."""
        if self.validators > 1:
            self.network = ValidatorNetwork(
                self.data_dir / "validators", self.validators, self.host, self.rpc_port, env=self.cors_env("node")
            )
            created = self.network.prepare()
            (self.data_dir / "keys").mkdir(parents=True, exist_ok=True)
            return created
        if (self.node_dir / "genesis.json").exists():
            return False
        init_data_dir(self.node_dir)
        (self.data_dir / "keys").mkdir(parents=True, exist_ok=True)
        return True

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> DevnetInfo:
        if self.throwaway_postgres:
            self._start_postgres(on_step)
        if self.network is not None:
            self._start_validators(on_step)
        else:
            self._start_node(on_step)
        genesis = load_genesis(self.node_dir / "genesis.json")
        return self._continue_start(on_step, genesis)

    def _start_postgres(self, on_step: Callable[[str], None]) -> None:
        """A fresh PostgreSQL for the coordinator (its state starts empty at each ``up``; the chain's does not)."""
        from aitbc.devnet.postgres import PostgresServer

        on_step("starting a throwaway PostgreSQL for the coordinator")
        server = self._postgres.enter_context(PostgresServer.start())
        self.database_url = server.create_database("coordinator")
        self._postgres_pid = server.postmaster_pid()

    def _start_validators(self, on_step: Callable[[str], None]) -> None:
        assert self.network is not None
        on_step(f"starting {self.validators} validators")
        self.network.start()
        for node in self.network.nodes:
            self.processes.append(
                ManagedProcess(f"validator{node.index}", [], node.log_path, f"{node.rpc_url}healthz", node.proc)
            )

    def _start_node(self, on_step: Callable[[str], None]) -> None:
        python = sys.executable
        node = ManagedProcess(
            "node",
            [
                python,
                "-m",
                "aitbc",
                "node",
                "run",
                "--data-dir",
                str(self.node_dir),
                "--host",
                self.host,
                "--rpc-port",
                str(self.rpc_port),
                "--ws-port",
                str(self.ws_port),
                "--p2p-port",
                str(self.p2p_port),
            ],
            self.data_dir / "logs" / "node.log",
            f"http://{self.host}:{self.rpc_port}/healthz",
            env=self.cors_env("node"),
        )
        self.processes.append(node)
        on_step("starting node")
        node.start()
        node.wait_healthy(timeout=30)

    def _continue_start(self, on_step: Callable[[str], None], genesis: Genesis) -> DevnetInfo:
        python = sys.executable
        rpc_url = f"http://{self.host}:{self.rpc_port}/"
        on_step("funding the coordinator and client keys")
        self.fund(rpc_url)
        api_key = self.client_api_key()
        on_step("funding the client's deposit with the coordinator")
        deposit_id = self.ensure_deposit(rpc_url, api_key)
        coordinator_url = f"http://{self.host}:{self.coordinator_port}"
        poolhub_url = self._start_poolhub(on_step)
        coordinator_urls = [f"http://{self.host}:{port}" for port in self.coordinator_ports]
        for i, port in enumerate(self.coordinator_ports):
            name = "coordinator" if i == 0 else f"coordinator{i}"
            coordinator = ManagedProcess(
                name,
                [
                    *(python, "-m", "aitbc", "coordinator", "run", "--data-dir", str(self.coordinator_dir)),
                    *("--host", self.host, "--port", str(port), "--chain-id", genesis.chain_id),
                    *("--node-url", rpc_url),
                    *(["--database-url", self.database_url] if self.database_url else []),
                    *(["--poolhub-url", poolhub_url] if poolhub_url else []),
                ],
                self.data_dir / "logs" / f"{name}.log",
                f"{coordinator_urls[i]}/healthz",
                env=self.cors_env("coordinator"),
                nice=0,  # the one latency-sensitive service: the others yield to it (``BATCH_NICE``)
            )
            self.processes.append(coordinator)
            on_step(f"starting {name}")
            coordinator.start()
            coordinator.wait_healthy(timeout=30)
        if self.miner_backend is not None:
            miner = ManagedProcess(
                "miner",
                [
                    python,
                    "-m",
                    "aitbc",
                    "miner",
                    "run",
                    "--coordinator",
                    coordinator_url,
                    "--backend",
                    self.miner_backend,
                    "--price",
                    str(DEVNET_MINER_PRICE),
                    "--base-units",
                    "--data-dir",
                    str(self.miner_dir),
                    # the builtin backend has torch: its miner also trains (docs/training.md)
                    *(["--training"] if self.miner_backend == "builtin" else []),
                ],
                self.data_dir / "logs" / "miner.log",
                f"{coordinator_url}/healthz",
            )
            self.processes.append(miner)
            on_step(f"starting miner ({self.miner_backend} backend)")
            miner.start()
            wait_for_miner(coordinator_url, miner, timeout=120)
        ws_url = self.network.nodes[0].ws_url if self.network else f"ws://{self.host}:{self.ws_port}/ws"
        exchange_url = self._start_exchange(on_step)
        web_url = self._start_web(
            on_step, genesis.chain_id, rpc_url, ws_url, coordinator_url, poolhub_url, exchange_url
        )
        info = DevnetInfo(
            chain_id=genesis.chain_id,
            rpc_url=rpc_url,
            ws_url=ws_url,
            node_data_dir=str(self.node_dir),
            faucet_key=str(self.node_dir / "faucet.key"),
            validator_key=str(self.node_dir / "validator.key"),
            keys_dir=str(self.data_dir / "keys"),
            coordinator_url=coordinator_url,
            api_key=api_key,
            deposit_id=deposit_id,
            client_key=str(self.client_key_path),
            coordinator_address=self.coordinator_key().address,
            miner_key=str(self.miner_dir / "miner.key") if self.miner_backend else None,
            poolhub_url=poolhub_url,
            exchange_url=exchange_url,
            web_url=web_url,
            coordinator_urls=coordinator_urls,
            pids={p.name: p.proc.pid for p in self.processes if p.proc is not None}
            | ({"postgres": self._postgres_pid} if self._postgres_pid else {}),
        )
        write_devnet_info(self.data_dir, info)
        return info

    def _start_poolhub(self, on_step: Callable[[str], None]) -> str | None:
        if self.poolhub_port is None:
            return None
        url = f"http://{self.host}:{self.poolhub_port}"
        hub = ManagedProcess(
            "poolhub",
            [
                *(sys.executable, "-m", "aitbc", "poolhub", "run", "--data-dir", str(self.data_dir / "poolhub")),
                *("--host", self.host, "--port", str(self.poolhub_port)),
            ],
            self.data_dir / "logs" / "poolhub.log",
            f"{url}/healthz",
            env=self.cors_env("poolhub"),
        )
        self.processes.append(hub)
        on_step("starting pool hub")
        hub.start()
        hub.wait_healthy(timeout=30)
        return url

    def _start_exchange(self, on_step: Callable[[str], None]) -> str | None:
        if self.exchange_port is None:
            return None
        url = f"http://{self.host}:{self.exchange_port}"
        exchange = ManagedProcess(
            "exchange",
            [
                *(sys.executable, "-m", "aitbc", "exchange", "run", "--data-dir", str(self.data_dir / "exchange")),
                *("--host", self.host, "--port", str(self.exchange_port)),
            ],
            self.data_dir / "logs" / "exchange.log",
            f"{url}/healthz",
            env=self.cors_env("exchange"),
        )
        self.processes.append(exchange)
        on_step("starting the exchange")
        exchange.start()
        exchange.wait_healthy(timeout=30)
        return url

    def _start_web(
        self,
        on_step: Callable[[str], None],
        chain_id: str,
        rpc_url: str,
        ws_url: str,
        coordinator_url: str,
        poolhub_url: str | None,
        exchange_url: str | None,
    ) -> str | None:
        """Serve the web app if it is built (``make web``); the devnet works without it."""
        from aitbc.web.config import default_dist_dir

        if self.web_url is None or not (default_dist_dir() / "index.html").is_file():
            return None
        web = ManagedProcess(
            "web",
            [
                *(sys.executable, "-m", "aitbc", "web", "serve", "--host", self.host, "--port", str(self.web_port)),
                *("--node-url", rpc_url, "--ws-url", ws_url, "--coordinator-url", coordinator_url),
                *(["--poolhub-url", poolhub_url] if poolhub_url else []),
                *(["--exchange-url", exchange_url] if exchange_url else []),
                *("--chain-id", chain_id),
            ],
            self.data_dir / "logs" / "web.log",
            f"{self.web_url}/healthz",
        )
        self.processes.append(web)
        on_step("starting the web app")
        web.start()
        web.wait_healthy(timeout=30)
        return self.web_url

    def ports(self) -> list[int]:
        """Every port this devnet listens on (``devnet up`` checks them all before it starts anything)."""
        from aitbc.web.config import default_dist_dir

        nodes = range(self.validators) if self.validators > 1 else range(1)
        ports = [self.rpc_port + 10 * i + k for i in nodes for k in range(3)]
        if self.validators == 1:
            ports = [self.rpc_port, self.ws_port, self.p2p_port]
        ports += self.coordinator_ports
        if self.poolhub_port is not None:
            ports.append(self.poolhub_port)
        if self.exchange_port is not None:
            ports.append(self.exchange_port)
        if self.web_port is not None and (default_dist_dir() / "index.html").is_file():
            ports.append(self.web_port)
        return ports

    def first_exited(self) -> ManagedProcess | None:
        return next((p for p in self.processes if p.proc is not None and p.proc.poll() is not None), None)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.network is not None:
            self.network.stop()
        self._postgres.close()  # after everyone using it
