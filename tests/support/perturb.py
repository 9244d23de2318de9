"""Perturbation harness for a local validator network (in the manner of CometBFT's e2e runner).

A TOML manifest describes the network and what happens to it::

    [network]
    validators = 4
    block_time_ms = 300
    duration_s = 40          # load + perturbations run this long
    senders = 8              # funded keys sending transfers, one tx in flight each
    timeout_propose_ms = 600
    timeout_vote_ms = 300
    timeout_delta_ms = 300
    liveness_window_s = 10   # while > 2/3 of the power is up, the height must grow in every window

    [[perturbation]]
    node = 1
    action = "kill"          # kill (-9, restarted after duration_s), pause (SIGSTOP/SIGCONT),
    at_s = 5                 # restart (SIGTERM, then start), disconnect (drop all p2p traffic),
    duration_s = 8           # partition, byzantine (see below)

    [[perturbation]]         # a network partition: nodes [0, 1] | the rest, both ways
    node = 0
    action = "partition"
    group = [0, 1]
    at_s = 12
    duration_s = 6

    [[perturbation]]         # a real validator misbehaving (equivocate, future-time, drop-votes, tamper;
    node = 2                 # aitbc.node.byzantine, switched on by the test-only --test-byzantine flag)
    action = "byzantine"
    behaviour = "tamper"
    at_s = 20
    duration_s = 8

The runner starts the processes, keeps a steady tx load on them, applies the
perturbations, then heals everything and checks, over JSON-RPC only: every
node has the same block hash at every height (no fork), every tx a node
reported committed is committed on every node at the same height (nothing
lost), perturbed nodes catch up, and the height grew in every window during
which more than 2/3 of the voting power (of the active set ``get_validators``
reports: a validator down for long is jailed and leaves it) was up and
connected (a byzantine node, and the smaller side of a partition, count as
down). The report also gives the longest stall (no new block on any node) and
the p99 of the recovery time (end of a perturbation → the perturbed nodes at
the height the network had then).

    python tests/support/perturb.py tests/e2e/manifests/long.toml
    python tests/support/perturb.py tests/e2e/manifests/byzantine-long.toml   # 100+ perturbations, ~7 min
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from aitbc.client.node import NodeClient
from aitbc.devnet.network import ValidatorNetwork
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.tx import Transfer, sign_tx
from aitbc.runtime.keyfile import read_keyfile
from support.ports import free_ports as _free_ports

ACTIONS = ("kill", "pause", "restart", "disconnect", "partition", "byzantine")
BYZANTINE = ("equivocate", "future-time", "drop-votes", "tamper")


@dataclass
class Perturbation:
    node: int
    action: str
    at_s: float
    duration_s: float = 5.0
    group: list[int] = field(default_factory=list)
    """partition: the nodes on one side (default: just ``node``)."""
    behaviour: str = "tamper"
    """byzantine: one of ``BYZANTINE``."""


@dataclass
class Manifest:
    validators: int = 4
    block_time_ms: int = 300
    duration_s: float = 40.0
    senders: int = 8
    timeout_propose_ms: int = 600
    timeout_vote_ms: int = 300
    timeout_delta_ms: int = 300
    liveness_window_s: float = 10.0
    catch_up_s: float = 60.0
    perturbations: list[Perturbation] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = tomllib.loads(path.read_text())
        manifest = cls(**data.get("network", {}))
        manifest.perturbations = [Perturbation(**p) for p in data.get("perturbation", [])]
        for p in manifest.perturbations:
            if p.action not in ACTIONS or not 0 <= p.node < manifest.validators:
                raise ValueError(f"bad perturbation {p}")
            if p.action == "byzantine" and p.behaviour not in BYZANTINE:
                raise ValueError(f"bad byzantine behaviour {p.behaviour}")
        return manifest


@dataclass
class Report:
    applied: list[str] = field(default_factory=list)
    heights: dict[int, int] = field(default_factory=dict)
    forks: int = 0
    committed: int = 0
    lost: int = 0
    stalls: list[str] = field(default_factory=list)
    not_caught_up: list[int] = field(default_factory=list)
    longest_stall_s: float = 0.0
    recoveries: list[float] = field(default_factory=list)

    @property
    def recovery_p99_s(self) -> float:
        if not self.recoveries:
            return 0.0
        ordered = sorted(self.recoveries)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def ok(self) -> bool:
        return not (self.forks or self.lost or self.stalls or self.not_caught_up) and self.committed > 0

    def render(self) -> str:
        lines = ["perturbations applied:", *(f"  {a}" for a in self.applied)]
        lines.append("heights reached: " + ", ".join(f"node{i}={h}" for i, h in sorted(self.heights.items())))
        lines.append(f"forks: {self.forks}")
        lines.append(f"committed txs: {self.committed}, lost: {self.lost}")
        lines.append(f"liveness stalls: {len(self.stalls)}" + "".join(f"\n  {s}" for s in self.stalls))
        lines.append(f"nodes not caught up: {self.not_caught_up}")
        lines.append(f"longest stall: {self.longest_stall_s:.1f} s, recovery p99: {self.recovery_p99_s:.1f} s")
        lines.append("RESULT: " + ("ok" if self.ok else "FAILED"))
        return "\n".join(lines)


def _sender_key(i: int) -> KeyPair:
    return KeyPair.from_seed(sha256(f"perturb-sender-{i}".encode()))


class Runner:
    def __init__(self, manifest: Manifest, base_dir: Path) -> None:
        self.m = manifest
        ports = _free_ports(3 * manifest.validators)
        self.net = ValidatorNetwork(
            base_dir,
            manifest.validators,
            ports=[tuple(ports[3 * i : 3 * i + 3]) for i in range(manifest.validators)],  # type: ignore[misc]
            extra_args=[
                "--test-byzantine",
                "--timeout-propose-ms",
                str(manifest.timeout_propose_ms),
                "--timeout-vote-ms",
                str(manifest.timeout_vote_ms),
                "--timeout-delta-ms",
                str(manifest.timeout_delta_ms),
                "--log-level",
                "warning",
            ],
        )
        self.report = Report()
        self.down: set[int] = set()
        """Nodes currently killed, paused, disconnected, byzantine or cut off by a partition (their power is
        not up)."""
        self.downs: dict[int, int] = {}
        """How many perturbations currently hold each node down (they may overlap)."""
        self.committed: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop_load = threading.Event()
        self.samples: list[tuple[float, int, bool]] = []
        """(time, max height over up nodes, whether > 2/3 of the active set's power was up)."""
        self.node_heights: list[tuple[float, dict[int, int]]] = []
        self.ended: list[tuple[float, list[int]]] = []
        """(when a perturbation ended, the nodes it hit): the recovery times start there."""
        self.cuts: dict[int, list[frozenset[str] | None]] = {}
        """Per node, the active p2p cuts (None: everything, else the addresses cut); written to its block file."""
        self.addresses: list[str] = []

    # -- network ------------------------------------------------------------
    def start(self) -> None:
        senders = {_sender_key(i).address: 10**12 for i in range(self.m.senders)}
        self.net.prepare(block_time_ms=self.m.block_time_ms, extra_balances=senders)
        self.addresses = [read_keyfile(n.data_dir / "validator.key").address for n in self.net.nodes]
        self.net.start()

    def heal_and_stop(self) -> None:
        for node in self.net.nodes:
            node.reconnect()
            node.resume()
        self.net.stop()

    def _height(self, index: int) -> int | None:
        with (
            contextlib.suppress(httpx.HTTPError, AitbcError, KeyError),
            NodeClient(self.net.nodes[index].rpc_url, timeout=2.0) as client,
        ):
            return int(client.get_head()["height"])
        return None

    # -- load -------------------------------------------------------------------
    def _sender(self, i: int) -> None:
        key = _sender_key(i)
        chain_id = ""
        nonce: int | None = None
        target = i % self.m.validators
        while not self.stop_load.is_set():
            node = self.net.nodes[target]
            if target in self.down:
                target = (target + 1) % self.m.validators
                continue
            try:
                with NodeClient(node.rpc_url, timeout=3.0) as client:
                    if not chain_id:
                        chain_id = client.get_chain_info()["chain_id"]
                    if nonce is None:
                        nonce = client.next_nonce(key.address)
                    tx = Transfer(
                        chain_id=chain_id,
                        sender=key.address,
                        nonce=nonce,
                        fee=1_000,
                        recipient=_sender_key((i + 1) % self.m.senders).address,
                        amount=1,
                    )
                    tx_hash = client.send_tx(sign_tx(tx, key))
                    status = client.wait_for_tx(tx_hash, timeout=6.0, poll=0.1)
                    if status["status"] == "committed":
                        with self.lock:
                            self.committed[tx_hash] = int(status["height"])
                        nonce += 1
                    else:
                        nonce = None  # dropped: start again from the committed nonce
            except (httpx.HTTPError, AitbcError, KeyError):
                nonce = None
                target = (target + 1) % self.m.validators
                time.sleep(0.2)

    # -- perturbations ------------------------------------------------------------
    def _set_cut(self, index: int, cut: frozenset[str] | None, on: bool) -> None:
        """Add or remove one p2p cut of a node and rewrite its block file (cuts may overlap)."""
        with self.lock:
            cuts = self.cuts.setdefault(index, [])
            if on:
                cuts.append(cut)
            else:
                cuts.remove(cut)
            path = self.net.nodes[index].block_file
            if not cuts:
                path.unlink(missing_ok=True)
            elif any(c is None for c in cuts):
                path.write_text("")
            else:
                path.write_text("".join(f"{a}\n" for c in cuts if c is not None for a in sorted(c)))

    def _hit(self, p: Perturbation) -> list[int]:
        """The nodes a perturbation takes out of the quorum."""
        if p.action != "partition":
            return [p.node]
        side = set(p.group or [p.node])
        rest = set(range(self.m.validators)) - side
        if len(side) == len(rest):
            return sorted(side | rest)
        return sorted(side if len(side) < len(rest) else rest)

    def _apply(self, p: Perturbation, started: float) -> None:
        node = self.net.nodes[p.node]
        delay = started + p.at_s - time.monotonic()
        if delay > 0 and self.stop_load.wait(delay):
            return
        t = time.monotonic() - started
        hit = self._hit(p)
        with self.lock:
            for i in hit:
                self.downs[i] = self.downs.get(i, 0) + 1
            self.down = {i for i, n in self.downs.items() if n > 0}
        side = sorted(set(p.group or [p.node]))
        cuts: dict[int, frozenset[str]] = {}
        if p.action == "kill":
            node.kill()
        elif p.action == "pause":
            node.pause()
        elif p.action == "restart":
            node.stop()
        elif p.action == "disconnect":
            self._set_cut(p.node, None, True)
        elif p.action == "partition":
            others = [i for i in range(self.m.validators) if i not in side]
            for i in range(self.m.validators):
                cuts[i] = frozenset(self.addresses[j] for j in (others if i in side else side))
                self._set_cut(i, cuts[i], True)
        elif p.action == "byzantine":
            (node.data_dir / "byzantine").write_text(p.behaviour)
        what = f"{p.action} {p.behaviour}" if p.action == "byzantine" else p.action
        target = f"nodes {side}" if p.action == "partition" else f"node{p.node}"
        self.report.applied.append(f"t={t:5.1f}s {what} {target} for {p.duration_s}s")
        time.sleep(p.duration_s)
        if p.action in ("kill", "restart"):
            node.start()
            with contextlib.suppress(Exception):
                node.wait_healthy(30)
        elif p.action == "pause":
            node.resume()
        elif p.action == "disconnect":
            self._set_cut(p.node, None, False)
        elif p.action == "partition":
            for i, cut in cuts.items():
                self._set_cut(i, cut, False)
        elif p.action == "byzantine":
            (node.data_dir / "byzantine").unlink(missing_ok=True)
        with self.lock:
            for i in hit:
                self.downs[i] -= 1
            self.down = {i for i, n in self.downs.items() if n > 0}
            self.ended.append((time.monotonic() - started, hit))

    def _quorum_up(self, down: set[int]) -> bool:
        """Is more than 2/3 of the active set's power (as the chain reports it, e.g. after a jailing) up?"""
        for i in range(self.m.validators):
            if i in down:
                continue
            with (
                contextlib.suppress(httpx.HTTPError, AitbcError, KeyError),
                NodeClient(self.net.nodes[i].rpc_url, timeout=2.0) as client,
            ):
                powers = {v["address"]: int(v["power"]) for v in client.get_validators()["validators"]}
                up = sum(p for a, p in powers.items() if a not in {self.addresses[j] for j in down})
                return 3 * up > 2 * sum(powers.values())
        return False

    def _monitor(self, started: float) -> None:
        while not self.stop_load.is_set():
            down = set(self.down)
            all_heights = {i: h for i in range(self.m.validators) if (h := self._height(i)) is not None}
            heights = [h for i, h in all_heights.items() if i not in down]
            now = time.monotonic() - started
            self.node_heights.append((now, all_heights))
            if heights:
                quorum = self._quorum_up(down) and down == self.down
                self.samples.append((now, max(heights), quorum))
            time.sleep(0.5)

    def _timings(self) -> None:
        """Longest stall (no node's height grew) and each perturbation's recovery time."""
        report, last_growth, best = self.report, 0.0, 0
        for t, heights in self.node_heights:
            top = max(heights.values(), default=0)
            if top > best:
                report.longest_stall_s = max(report.longest_stall_s, t - last_growth)
                best, last_growth = top, t
        if self.node_heights:
            report.longest_stall_s = max(report.longest_stall_s, self.node_heights[-1][0] - last_growth)
        for ended, hit in self.ended:
            before = [h for t, hs in self.node_heights if t <= ended for h in hs.values()]
            target = max(before, default=0)
            for t, heights in self.node_heights:
                if t >= ended and all(heights.get(i, -1) >= target for i in hit):
                    report.recoveries.append(t - ended)
                    break

    # -- the run ------------------------------------------------------------------------
    def run(self) -> Report:
        self.start()
        started = time.monotonic()
        threads = [threading.Thread(target=self._sender, args=(i,), daemon=True) for i in range(self.m.senders)]
        threads += [threading.Thread(target=self._apply, args=(p, started), daemon=True) for p in self.m.perturbations]
        threads.append(threading.Thread(target=self._monitor, args=(started,), daemon=True))
        for t in threads:
            t.start()
        time.sleep(self.m.duration_s)
        self.stop_load.set()
        for t in threads:
            t.join(timeout=60)
        for node in self.net.nodes:  # heal whatever is still perturbed
            node.reconnect()
            node.resume()
            (node.data_dir / "byzantine").unlink(missing_ok=True)
            if not node.running:
                node.start()
        self._timings()
        self._check()
        return self.report

    def _check(self) -> None:
        m, report = self.m, self.report
        # liveness: in every window with > 2/3 of the power up throughout, the height grew
        for i, (t0, h0, _) in enumerate(self.samples):
            window = [s for s in self.samples[i:] if s[0] <= t0 + m.liveness_window_s]
            if window[-1][0] < t0 + m.liveness_window_s - 1.0:
                break
            if all(quorum for _, _, quorum in window) and max(h for _, h, _ in window) <= h0:
                report.stalls.append(f"no block between t={t0:.1f}s and t={window[-1][0]:.1f}s (height {h0})")
        # catch-up: every node reaches the highest height seen
        target = max((h for _, h, _ in self.samples), default=0)
        deadline = time.monotonic() + m.catch_up_s
        while time.monotonic() < deadline:
            heights = {i: self._height(i) or 0 for i in range(m.validators)}
            if min(heights.values()) >= target:
                break
            time.sleep(0.5)
        report.heights = heights
        report.not_caught_up = [i for i, h in heights.items() if h < target]
        # no fork: identical block hashes at every height all nodes have
        common = min(heights.values())
        clients = [NodeClient(n.rpc_url, timeout=10.0) for n in self.net.nodes]
        try:
            for height in range(1, common + 1):
                hashes = {c.get_block(height, False)["hash"] for c in clients}
                if len(hashes) > 1:
                    report.forks += 1
            # nothing lost: every tx reported committed is committed, at the same height, everywhere
            report.committed = len(self.committed)
            for tx_hash, height in self.committed.items():
                for c in clients:
                    status = c.get_tx_status(tx_hash)
                    if status["status"] != "committed" or int(status["height"]) != height:
                        report.lost += 1
                        break
        finally:
            for c in clients:
                c.close()


def run_manifest(path: Path, base_dir: Path | None = None) -> Report:
    manifest = Manifest.load(path)
    with tempfile.TemporaryDirectory(prefix="aitbc-perturb-") as tmp:
        runner = Runner(manifest, base_dir or Path(tmp))
        try:
            return runner.run()
        finally:
            runner.heal_and_stop()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    report = run_manifest(Path(argv[1]))
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
