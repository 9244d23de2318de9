"""Staking bookkeeping: a block of delegations on top of many existing bonds.

What it does, in order:

1. builds a committed state whose staking already holds ``--bonds`` bonds
   (delegations of ``--min`` base units from distinct accounts to one genesis
   authority) and funds ``--delegations`` fresh delegators;
2. signs ``--delegations`` ``delegate`` txs to the same validator (nothing is
   signed while timed) and treats them as mempool txs, whose signatures were
   checked on admission (as a validator does for a proposal's txs it holds);
3. times ``build_block`` (the proposer executes them) and ``apply_block`` (a
   validator checks and executes the block and compares the state root), best
   of ``--repeat``, as wall time and as this thread's CPU time (the CPU time
   hardly moves with the load of a shared machine); then once
   ``commit_delta`` (the node makes the block's writes its head state);
4. baseline, measured in the same run: the bond bookkeeping the chain used
   before the bond index (``process_bond`` on the sorted ``StakingState.bonds``
   list, rebuilt per change) for ``--baseline`` delegations, scaled to
   ``--delegations``; plus the old state-root cost of re-encoding the whole
   staking state (all bonds) once per block.

    .venv/bin/python bench/staking.py                         # 1,000 delegations over 50,000 bonds
    .venv/bin/python bench/staking.py --bonds 1000            # the same over 1,000 bonds
"""

from __future__ import annotations

import argparse
import os
import time

from aitbc.chain.block import apply_block, build_block
from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block
from aitbc.chain.params import ChainParams
from aitbc.chain.state import Account, ChainState, commit_delta
from aitbc.chain.validators import Bond, StakingParams, StakingState, process_bond
from aitbc.protocol import codec
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.tx import Delegate, VerifiedTx, sign_tx, verify_tx

CHAIN = "aitbc-bench"


def _address(tag: str, i: int) -> str:
    return KeyPair.from_seed(sha256(f"{tag}-{i}".encode())).address


def make_state(bonds: int, delegators: list[KeyPair], params: ChainParams) -> tuple[ChainState, KeyPair, Genesis]:
    authority = KeyPair.from_seed(sha256(b"bench-authority"))
    existing = [Bond(authority.address, _address("old", i), params.staking.min_delegation) for i in range(bonds)]
    existing.sort(key=lambda b: (b.validator, b.delegator))
    funded = {k.address: 10**12 for k in delegators}
    genesis = Genesis(
        chain_id=CHAIN,
        genesis_time_ms=1,
        authorities=[authority.address],
        balances=[GenesisBalance(a, v) for a, v in sorted(funded.items())],
        params=params,
    )
    state = ChainState.from_accounts(
        {a: Account(balance=v) for a, v in funded.items()},
        staking=StakingState(bonds=existing),
        authorities=(authority.address,),
    )
    return state, authority, genesis


def run(bonds: int, delegations: int, repeat: int, baseline: int) -> dict[str, float]:
    params = ChainParams(staking=StakingParams())
    amount = params.staking.min_delegation
    delegators = [KeyPair.from_seed(sha256(f"new-{i}".encode())) for i in range(delegations)]
    t0 = time.perf_counter()
    state, authority, genesis = make_state(bonds, delegators, params)
    setup_s = time.perf_counter() - t0
    head = genesis_block(genesis, state).header
    txs: list[VerifiedTx] = [
        verify_tx(
            sign_tx(
                Delegate(
                    chain_id=CHAIN,
                    sender=k.address,
                    nonce=0,
                    fee=params.min_fee,
                    validator=authority.address,
                    amount=amount,
                ),
                k,
            )
        )
        for k in delegators
    ]
    known = {v.hash for v in txs}
    build_s = apply_s = apply_cpu_s = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        outcome = build_block(state, head, txs, authority, 1_000, params)
        build_s = min(build_s, time.perf_counter() - t)
        assert len(outcome.included) == delegations, [e.reason for _, e in outcome.dropped[:3]]
        t, cpu = time.perf_counter(), time.thread_time()
        applied = apply_block(
            state, head, outcome.block, [authority.address], params, is_known_valid=known.__contains__
        )
        apply_s = min(apply_s, time.perf_counter() - t)
        apply_cpu_s = min(apply_cpu_s, time.thread_time() - cpu)
    state.bonds.to_list()  # built at a node's first block; each later block only merges its writes into it
    t, cpu = time.perf_counter(), time.thread_time()
    commit_delta(state, applied.delta, applied.tree)
    commit_s, commit_cpu_s = time.perf_counter() - t, time.thread_time() - cpu
    assert state.bonds.get(authority.address, delegators[0].address) == amount
    # baseline: the list bookkeeping (rebuild the sorted bond list per change) and the old root (whole staking)
    staking = state.staking
    t = time.perf_counter()
    for k in delegators[:baseline]:
        staking = process_bond(staking, authority.address, k.address, amount, [authority.address], params.staking)
    per_change = (time.perf_counter() - t) / baseline
    t = time.perf_counter()
    sha256(codec.encode(staking))
    old_root_s = time.perf_counter() - t
    return {
        "setup_s": setup_s,
        "build_ms": build_s * 1000,
        "apply_ms": apply_s * 1000,
        "apply_cpu_ms": apply_cpu_s * 1000,
        "commit_ms": commit_s * 1000,
        "commit_cpu_ms": commit_cpu_s * 1000,
        "old_per_change_ms": per_change * 1000,
        "old_block_ms": (per_change * delegations + old_root_s) * 1000,
        "old_root_ms": old_root_s * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bonds", type=int, default=50_000)
    parser.add_argument("--delegations", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=int, default=10, help="delegations timed on the old list bookkeeping")
    args = parser.parse_args()
    r = run(args.bonds, args.delegations, args.repeat, args.baseline)
    load = os.getloadavg()
    print(f"staking bench: {args.delegations:,} delegations in one block over {args.bonds:,} existing bonds")
    print(f"  build_block (proposer executes):           {r['build_ms']:8.1f} ms")
    print(f"  apply_block (validator checks + executes):  {r['apply_ms']:8.1f} ms  (tx signatures known valid)")
    print(f"  apply_block, CPU time of the thread:        {r['apply_cpu_ms']:8.1f} ms")
    commit_cpu = f"(once; CPU {r['commit_cpu_ms']:.1f} ms)"
    print(f"  commit_delta (the writes become the head):  {r['commit_ms']:8.1f} ms  {commit_cpu}")
    print(f"  baseline, old list bookkeeping:            {r['old_per_change_ms']:8.2f} ms per delegation")
    print(f"  baseline, old whole-staking root encode:   {r['old_root_ms']:8.1f} ms per block")
    print(f"  baseline block (scaled):                   {r['old_block_ms']:8.1f} ms")
    print(f"  speed-up apply vs baseline:                {r['old_block_ms'] / r['apply_ms']:8.1f}x")
    print(
        f"conditions: state setup {r['setup_s']:.1f} s, best of {args.repeat}, 1 process, "
        f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (shared machine)"
    )


if __name__ == "__main__":
    main()
