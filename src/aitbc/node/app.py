"""Wiring of one node process: store + service + HTTP (RPC/REST) + WebSocket + block clock.

This is the only module that knows how the pieces fit; ``aitbc node run`` calls ``run_node``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Iterator

import uvicorn
import uvloop

from aitbc.chain.genesis import load_genesis
from aitbc.node.bft import BftDriver
from aitbc.node.config import NodeSettings
from aitbc.node.http import create_http_app
from aitbc.node.metrics import NodeMetrics
from aitbc.node.rpc import RpcLimits
from aitbc.node.service import NodeService
from aitbc.node.store import NodeStore
from aitbc.node.ws import EventHub, start_ws_server
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.keyfile import read_keyfile
from aitbc.runtime.limits import BodyLimit, GuardedConfig

log = logging.getLogger("aitbc.node")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the node stops everything together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def open_node(settings: NodeSettings) -> NodeService:
    genesis = load_genesis(settings.genesis_path)
    key = read_keyfile(settings.validator_key_path)
    return NodeService(genesis, NodeStore(settings.db_path), key, NodeMetrics())


async def _block_clock(node: NodeService, stop: asyncio.Event) -> None:
    """Propose a block every ``block_time``, aligned to a fixed schedule (no drift); the interval is read
    from the live parameters each time, so a governance change of ``block_time_ms`` applies at once."""
    next_at = time.monotonic() + node.params.block_time_ms / 1000
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - time.monotonic()))
        if stop.is_set():
            break
        outcome = await node.produce_block()
        if outcome.included:
            log.info("committed block", extra={"height": outcome.block.header.height, "txs": len(outcome.included)})
        interval = node.params.block_time_ms / 1000
        next_at += interval
        if next_at < time.monotonic():  # we fell behind; do not burst to catch up
            next_at = time.monotonic() + interval


def _bind(host: str, port: int, what: str) -> socket.socket:
    """Bind before announcing anything, so a busy port is one clear error, not a traceback later."""
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}; pick another port") from None


async def serve_node(settings: NodeSettings) -> None:
    rpc_socket = _bind(settings.host, settings.rpc_port, "JSON-RPC")
    try:
        ws_socket = _bind(settings.host, settings.ws_port, "WebSocket")
    except ConfigError:
        rpc_socket.close()
        raise
    ws_socket.close()  # the WebSocket server binds it again right away; this only checks it is free
    p2p_socket: socket.socket | None = None
    node = open_node(settings)
    if node.consensus == "bft":
        try:
            p2p_socket = _bind(settings.host, settings.p2p_port, "p2p")
        except ConfigError:
            rpc_socket.close()
            node.close()
            raise
    hub = EventHub(node.metrics, replay=node.job_events_page)
    node.add_listener(hub.publish, hub.has_subscribers)
    node.verifier.start()
    rpc_limits = RpcLimits(max_batch=settings.max_batch, max_reply_bytes=settings.max_reply_bytes)
    config = GuardedConfig(
        BodyLimit(create_http_app(node, rpc_limits, settings.cors_origins), settings, rpc_paths={"/"}),
        settings,
        host=settings.host,
        port=settings.rpc_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    http_server = _QuietServer(config)
    ws_server = await start_ws_server(hub, settings.host, settings.ws_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    http_task = asyncio.create_task(http_server.serve(sockets=[rpc_socket]))
    driver: BftDriver | None = None
    if node.consensus == "bft":
        driver = BftDriver(node, settings)
        await driver.start(p2p_socket)
        clock_task: asyncio.Task[object] = asyncio.create_task(stop.wait())
    else:
        clock_task = asyncio.create_task(_block_clock(node, stop))
    log.info(
        "node started",
        extra={
            "chain_id": node.chain_id,
            "height": node.head.height,
            "rpc": f"http://{settings.host}:{settings.rpc_port}/",
            "ws": f"ws://{settings.host}:{settings.ws_port}/ws",
            "validator": node.key.address,
            "consensus": node.consensus,
            "p2p": f"{settings.host}:{settings.p2p_port}" if driver is not None else None,
        },
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({http_task, clock_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    for task in done:
        if task is not stopper and task.exception() is not None:
            log.error("node task failed", exc_info=task.exception())
    log.info("stopping node", extra={"height": node.head.height})
    with contextlib.suppress(Exception):
        await clock_task  # let an in-flight block finish committing
    if driver is not None:
        with contextlib.suppress(Exception):
            await driver.stop()
    http_server.should_exit = True
    with contextlib.suppress(Exception):
        await http_task
    ws_server.close()
    await ws_server.wait_closed()
    node.close()
    log.info("node stopped", extra={"height": node.head.height})


def run_node(settings: NodeSettings) -> None:
    uvloop.run(serve_node(settings))
