"""The devnet lets its web app's origin call the services (CORS settings in each process's environment),
for a single node and for a BFT validator network, and not at all without a web app."""

from __future__ import annotations

import json
from pathlib import Path

from aitbc.devnet.runner import Devnet


def test_services_allow_the_web_origin(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path, web_port=18015)
    assert devnet.web_url == "http://127.0.0.1:18015"
    for service in ("node", "coordinator", "poolhub", "exchange"):
        env = devnet.cors_env(service)
        assert json.loads(env[f"AITBC_{service.upper()}_CORS_ORIGINS"]) == ["http://127.0.0.1:18015"]


def test_no_web_app_no_cors(tmp_path: Path) -> None:
    assert Devnet(tmp_path, web_port=None).cors_env("coordinator") == {}


def test_validator_network_nodes_get_the_origin(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path, validators=2, rpc_port=19900, web_port=18015)
    devnet.prepare()
    assert devnet.network is not None
    for node in devnet.network.nodes:
        assert json.loads(node.env["AITBC_NODE_CORS_ORIGINS"]) == ["http://127.0.0.1:18015"]
