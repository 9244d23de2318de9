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
from aitbc.runtime.server import announce, bind_socket, build_server, scheme_of, url_of
from aitbc.runtime.tls import server_tls

log = logging.getLogger("aitbc.node")


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


async def serve_node(settings: NodeSettings) -> None:
    tls = server_tls(settings)  # HTTPS/WSS from the certificate, or plain only on loopback (ConfigError first)
    # Every socket is bound before anything is announced (port 0: the OS picks; ``announce`` says which).
    rpc_socket = bind_socket(settings.host, settings.rpc_port, "JSON-RPC")
    try:
        ws_socket = bind_socket(settings.host, settings.ws_port, "WebSocket")
    except ConfigError:
        rpc_socket.close()
        raise
    p2p_socket: socket.socket | None = None
    node = open_node(settings)
    if node.consensus == "bft":
        try:
            p2p_socket = bind_socket(settings.host, settings.p2p_port, "p2p")
        except ConfigError:
            rpc_socket.close()
            ws_socket.close()
            node.close()
            raise
    hub = EventHub(node.metrics, replay=node.job_events_page)
    node.add_listener(hub.publish, hub.has_subscribers)
    node.verifier.start()
    rpc_limits = RpcLimits(max_batch=settings.max_batch, max_reply_bytes=settings.max_reply_bytes)
    # the node stops all its servers together, so the HTTP server leaves signals to it
    http_server = build_server(
        create_http_app(node, rpc_limits, settings.cors_origins),
        settings,
        rpc_paths={"/"},
        lifespan="off",
        own_signals=False,
    )
    ws_server = await start_ws_server(
        hub,
        settings.host,
        settings.ws_port,
        sock=ws_socket,
        max_connections=settings.ws_max_connections,
        open_timeout_s=settings.header_timeout_s,
        ssl_context=None if tls is None else tls.server_context(),
    )
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
            "rpc": url_of(rpc_socket, scheme_of(settings)) + "/",
            "ws": url_of(ws_socket, "ws" if tls is None else "wss") + "/ws",
            "validator": node.key.address,
            "consensus": node.consensus,
            "p2p": None if p2p_socket is None else url_of(p2p_socket, "tcp"),
        },
    )
    announce(
        "node",
        rpc_socket,
        settings.announce_file,
        scheme=scheme_of(settings),
        ws_port=ws_socket.getsockname()[1],
        p2p_port=None if p2p_socket is None else p2p_socket.getsockname()[1],
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
