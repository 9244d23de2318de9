"""The hostile-input probes of issue 14, replayed against the real node, coordinator, pool hub and wallet daemon.

Each service runs as its own process with short idle/header timeouts (settings from the environment) and is
sent, without credentials: 300 MiB bodies chunked and with a declared length, headers that never end, and
1,000 idle or half-sent connections. Each must answer the right 4xx, stay up, and grow its RSS by less
than 32 MiB (peak, sampled every 10 ms). The node also gets the 300 x ``get_block`` batch over a block of
1,000 txs and a batch over ``max_batch``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aitbc.protocol.tx import Transfer, sign_tx, tx_to_json_obj
from aitbc.runtime.keyfile import read_keyfile
from e2e.hostile import (
    HEADER_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    PYTHON,
    WS_MAX_CONNECTIONS,
    MiB,
    Service,
    hold_connections,
    parse_reply,
    rss_growth,
    start_service,
    stream_body,
    wait_all_closed,
)

RSS_BUDGET = 32 * MiB
HOSTILE_BODY = 300 * MiB
SERVICES = ("node", "coordinator", "poolhub", "wallet")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    root = tmp_path_factory.mktemp("hostile")
    running: dict[str, Service] = {}
    try:
        for name in SERVICES:
            running[name] = start_service(name, root)
        yield running
    finally:
        for service in running.values():
            service.stop()


def _limit_error(reply_json: dict[str, object], rpc: bool) -> dict[str, object]:
    error = reply_json["error"]
    assert isinstance(error, dict)
    if rpc:
        assert error["code"] == -32600
        data = error["data"]
        assert isinstance(data, dict)
        return data
    return error


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_300_mib_body_without_credentials_is_413_early(services: dict[str, Service], name: str, chunked: bool) -> None:
    service = services[name]
    stream_body(service.port, service.post_path, 8 * MiB, chunked=True)  # warm-up: first-request allocations
    with rss_growth(service.pid) as growth:
        reply, sent = stream_body(service.port, service.post_path, HOSTILE_BODY, chunked=chunked)
    assert reply is not None, f"{name} answered nothing:\n{service.log()}"
    assert reply.status == 413, reply
    error = _limit_error(reply.json(), service.rpc)
    assert error["reason"] == "too_large" and error["limit"] == "max_body_bytes"
    assert sent < 64 * MiB, f"{name} read {sent} bytes before refusing"
    print(f"\n{name} 300 MiB {'chunked' if chunked else 'declared'}: 413 after {sent / MiB:.1f} MiB sent, "
          f"RSS peak growth {growth[0] / MiB:.1f} MiB")  # fmt: skip
    assert growth[0] < RSS_BUDGET, f"{name} RSS grew {growth[0] / MiB:.1f} MiB"
    service.healthy()


@pytest.mark.parametrize("name", SERVICES)
def test_endless_headers_are_431(services: dict[str, Service], name: str) -> None:
    service = services[name]
    with rss_growth(service.pid) as growth:
        reply, _ = stream_body(
            service.port, "/healthz", 1, chunked=False, headers={"X-Pad": "a" * (256 * 1024)}, chunk=1
        )
    assert reply is not None and reply.status == 431, reply
    assert growth[0] < RSS_BUDGET
    service.healthy()


@pytest.mark.parametrize("name", SERVICES)
def test_1000_idle_and_partial_connections_are_closed_within_the_timeouts(
    services: dict[str, Service], name: str
) -> None:
    service = services[name]
    with rss_growth(service.pid) as growth:
        socks = hold_connections(service.port, idle=500, partial=500)
        still_open, waited = wait_all_closed(socks, within=max(IDLE_TIMEOUT_S, HEADER_TIMEOUT_S) + 5)
    assert still_open == 0, f"{name}: {still_open} of 1000 connections still open after {waited:.1f} s"
    assert growth[0] < RSS_BUDGET, f"{name} RSS grew {growth[0] / MiB:.1f} MiB"
    service.healthy()


def test_connections_past_the_cap_get_503_at_once(services: dict[str, Service]) -> None:
    service = services["coordinator"]
    socks = hold_connections(service.port, idle=MAX_CONNECTIONS + 50, partial=0)
    try:
        time.sleep(0.5)
        refused = 0
        for sock in socks[-50:]:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            refused += data.startswith(b"HTTP/1.1 503")
        assert refused >= 40, f"only {refused} of 50 over-cap connections were refused"
    finally:
        wait_all_closed(socks, within=IDLE_TIMEOUT_S + 5)
    service.healthy()


def _fill_a_block(node: Service, data_dir: Path, txs: int) -> int:
    faucet = read_keyfile(data_dir / "faucet.key")
    info = httpx.post(node.url, json={"jsonrpc": "2.0", "method": "get_chain_info", "id": 1}).json()["result"]
    recipient = read_keyfile(data_dir / "validator.key").address
    calls = [
        {
            "jsonrpc": "2.0",
            "method": "send_tx",
            "id": nonce,
            "params": [
                tx_to_json_obj(
                    sign_tx(
                        Transfer(
                            chain_id=info["chain_id"],
                            sender=faucet.address,
                            nonce=nonce,
                            fee=1_000,
                            recipient=recipient,
                            amount=1,
                            memo="m" * 64,
                        ),
                        faucet,
                    )
                )
            ],
        }
        for nonce in range(txs)
    ]
    replies = httpx.post(node.url, json=calls, timeout=60).json()
    assert all("result" in r for r in replies), replies[:3]
    last = replies[-1]["result"]["tx_hash"]
    deadline = time.monotonic() + 60
    while httpx.get(f"{node.url}/v1/txs/{last}/status").json()["status"] != "committed":
        assert time.monotonic() < deadline, "the txs were not committed"
        time.sleep(0.2)
    head = httpx.get(node.url + "/v1/head").json()["height"]
    sizes = {h: len(httpx.get(f"{node.url}/v1/blocks/{h}").json()["txs"]) for h in range(1, head + 1)}
    return max(sizes, key=lambda h: sizes[h])


def test_300_get_block_batch_is_refused_whole_within_the_reply_budget(
    services: dict[str, Service], tmp_path_factory: pytest.TempPathFactory
) -> None:
    node = services["node"]
    data_dir = Path(node.args[node.args.index("--data-dir") + 1])
    height = _fill_a_block(node, data_dir, 1_000)
    one = httpx.post(node.url, json={"jsonrpc": "2.0", "method": "get_block", "params": [height], "id": 1})
    assert one.status_code == 200 and len(one.json()["result"]["txs"]) >= 300
    batch = [{"jsonrpc": "2.0", "method": "get_block", "params": [height], "id": i} for i in range(300)]
    with rss_growth(node.pid) as growth:
        started = time.monotonic()
        reply = httpx.post(node.url, json=batch, timeout=60)
        took = time.monotonic() - started
    assert reply.status_code == 413, reply.text[:300]
    data = _limit_error(reply.json(), rpc=True)
    assert data["reason"] == "reply_too_large" and data["limit"] == "max_reply_bytes"
    print(f"\n300 x get_block: 413 in {took:.2f} s, node RSS peak growth {growth[0] / MiB:.1f} MiB")
    assert growth[0] < RSS_BUDGET, f"node RSS grew {growth[0] / MiB:.1f} MiB"
    assert took < 5, f"refusing took {took:.1f} s"
    assert node.healthy() < 1.0


def test_batch_over_max_batch_is_413(services: dict[str, Service]) -> None:
    node = services["node"]
    batch = [{"jsonrpc": "2.0", "method": "get_head", "id": i} for i in range(1_001)]
    reply = httpx.post(node.url, json=batch, timeout=30)
    assert reply.status_code == 413
    data = _limit_error(reply.json(), rpc=True)
    assert data["reason"] == "batch_too_large" and data["max_calls"] == 1_000
    node.healthy()


# -- inputs that gave a 500 -----------------------------------------------------------------------
HUGE = "9" * 30


def test_node_huge_heights_and_sequence_numbers_are_4xx(services: dict[str, Service]) -> None:
    node = services["node"]
    for path in (f"/v1/job-events?from_height={HUGE}", f"/v1/job-events/page?after_seq={HUGE}", f"/v1/blocks/{HUGE}"):
        reply = httpx.get(node.url + path, timeout=10)
        assert 400 <= reply.status_code < 500, (path, reply.status_code, reply.text)
    call = {"jsonrpc": "2.0", "method": "get_job_events", "params": {"after_seq": int(HUGE)}, "id": 1}
    assert httpx.post(node.url, json=call).json()["error"]["code"] == -32602
    node.healthy()


def test_coordinator_huge_list_cursor_is_400(services: dict[str, Service]) -> None:
    coordinator = services["coordinator"]
    data_dir = coordinator.args[coordinator.args.index("--data-dir") + 1]
    created = subprocess.run(
        [PYTHON, "-m", "aitbc", "coordinator", "keys", "create", "--data-dir", data_dir, "--name", "hostile"],
        capture_output=True,
        text=True,
        env=coordinator.env,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].strip()
    for cursor in (f"{HUGE}:0:job_x", f"1:{HUGE}:job_x", f"{HUGE}", f"1:0:{'x' * 500}", "١٢٣:0:job_x", "1:job_x"):
        reply = httpx.get(coordinator.url + "/api/v1/jobs", params={"cursor": cursor}, headers={"X-Api-Key": key})
        assert reply.status_code == 400 and reply.json()["error"]["reason"] == "invalid_cursor", (cursor, reply.text)
    coordinator.healthy()


def _wallet_token(wallet: Service) -> str:
    wallet_dir = Path(wallet.args[wallet.args.index("--wallet-dir") + 1])
    return (wallet_dir / "daemon.token").read_text().strip()


def test_wallet_unlock_with_nan_timeout_is_422(services: dict[str, Service]) -> None:
    wallet = services["wallet"]
    headers = {"Authorization": f"Bearer {_wallet_token(wallet)}", "Content-Type": "application/json"}
    for value in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        body = b'{"passphrase": "correct horse", "timeout_s": ' + value + b"}"
        reply = httpx.post(wallet.url + "/v1/wallets/alice/unlock", content=body, headers=headers)
        assert reply.status_code == 422, (value, reply.status_code, reply.text)
        assert reply.json()["error"]["reason"] == "invalid_request"
    wallet.healthy()


def test_wallet_refuses_foreign_hosts_and_cross_origin_requests(services: dict[str, Service]) -> None:
    wallet = services["wallet"]
    rebinding = httpx.get(wallet.url + "/metrics", headers={"Host": f"attacker.example:{wallet.port}"})
    assert rebinding.status_code == 403 and rebinding.json()["error"]["reason"] == "host_not_allowed"
    page = httpx.get(wallet.url + "/metrics", headers={"Origin": "http://attacker.example"})
    assert page.status_code == 403 and page.json()["error"]["reason"] == "origin_not_allowed"
    token = {"Authorization": f"Bearer {_wallet_token(wallet)}"}
    preflight = httpx.options(wallet.url + "/v1/wallets", headers={"Origin": "http://attacker.example", **token})
    assert preflight.status_code == 403
    for host in ("127.0.0.1", "localhost", f"localhost:{wallet.port}", f"[::1]:{wallet.port}"):
        assert httpx.get(wallet.url + "/healthz", headers={"Host": host}).status_code == 200, host
    assert httpx.get(wallet.url + "/v1/wallets", headers=token).status_code == 200


# -- the node's WebSocket port ----------------------------------------------------------------------------
def _ws_port(node: Service) -> int:
    return int(node.args[node.args.index("--ws-port") + 1])


def test_node_websocket_idle_and_partial_handshakes_are_closed_within_the_header_timeout(
    services: dict[str, Service],
) -> None:
    node = services["node"]
    with rss_growth(node.pid) as growth:
        socks = hold_connections(_ws_port(node), idle=500, partial=500)
        still_open, waited = wait_all_closed(socks, within=HEADER_TIMEOUT_S + 5)
    assert still_open == 0, f"{still_open} of 1000 WebSocket connections still open after {waited:.1f} s"
    assert growth[0] < RSS_BUDGET
    node.healthy()


def test_node_websocket_subscribers_past_the_cap_get_503(services: dict[str, Service]) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    node = services["node"]
    url = f"ws://127.0.0.1:{_ws_port(node)}/ws"
    clients = [connect(url) for _ in range(WS_MAX_CONNECTIONS)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(url)
        assert refused.value.response.status_code == 503
    finally:
        for client in clients:
            client.close()
    deadline = time.monotonic() + 10
    while True:  # the slots are free again once the server saw the closes
        try:
            connect(url).close()
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.1)


@pytest.mark.parametrize("name", SERVICES)
def test_a_body_that_stops_arriving_is_408_within_the_body_timeout(services: dict[str, Service], name: str) -> None:
    service = services[name]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", service.port), timeout=15) as sock:
        sock.sendall(
            f"POST {service.post_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"partial": '.encode()
        )
        received = b""
        while (reply := parse_reply(received)) is None:
            chunk = sock.recv(65536)
            assert chunk, f"{name} closed without answering"
            received += chunk
    took = time.monotonic() - started
    assert reply.status == 408, reply
    assert 2.5 < took < 8, f"{name} answered after {took:.1f} s (body_timeout_s is 3)"
    service.healthy()
