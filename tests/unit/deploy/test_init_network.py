"""`aitbc node init-network`: one genesis for validators and full nodes in separate directories (deploy/)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from aitbc.chain.genesis import load_genesis
from aitbc.cli.main import app
from aitbc.runtime.keyfile import read_keyfile


def test_init_network_writes_one_genesis_and_is_idempotent_with_exist_ok(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["node", "init-network", "--data-dir", str(tmp_path), "--validators", "4", "--full-nodes", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    genesis = load_genesis(tmp_path / "node0" / "genesis.json")
    assert len(genesis.authorities) == 4
    for i in range(4):
        assert (tmp_path / f"node{i}" / "genesis.json").read_bytes() == (
            tmp_path / "node0" / "genesis.json"
        ).read_bytes()
        assert read_keyfile(tmp_path / f"node{i}" / "validator.key").address == genesis.authorities[i]
    full_key = read_keyfile(tmp_path / "full0" / "validator.key")
    assert full_key.address not in genesis.authorities
    assert (tmp_path / "full0" / "genesis.json").read_bytes() == (tmp_path / "node0" / "genesis.json").read_bytes()
    assert not (tmp_path / "full0" / "faucet.key").exists()

    again = runner.invoke(app, args)
    assert again.exit_code != 0
    assert "already initialized" in again.output
    tolerated = runner.invoke(app, [*args, "--exist-ok"])
    assert tolerated.exit_code == 0, tolerated.output
    assert load_genesis(tmp_path / "node0" / "genesis.json") == genesis
