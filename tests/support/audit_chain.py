"""A chain in memory for audit rule tests: genesis with a client, a coordinator and four miners, blocks built
by the real block rule, supply checked after every block, and a settled job in two blocks."""

from __future__ import annotations

from aitbc.chain.audit_params import AuditParams
from aitbc.chain.audit_types import Audit, get_audit
from aitbc.chain.block import build_block
from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block, genesis_state
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import ChainState, commit_delta
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import TxRejection
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import BondMiner, OpenEscrow, SettleJob, Tx, sign_tx, verify_tx

CHAIN = "aitbc-test"
AUTHORITY = KeyPair.from_seed(b"\x01" * 32)
CLIENT = KeyPair.from_seed(b"\x02" * 32)
COORDINATOR = KeyPair.from_seed(b"\x03" * 32)
MINERS = [KeyPair.from_seed(bytes([0x10 + i]) * 32) for i in range(4)]
DIGEST = "sha256:" + "ab" * 32
START = 10**9
AUDIT = AuditParams(
    probability_bps=10_000,
    min_miner_bond=1_000,
    unbonding_blocks=5,
    audit_window_blocks=4,
    dispute_window_blocks=4,
    fraud_slash_bps=5_000,
    reporter_reward_bps=3_000,
    audit_fee_bps=2_000,
)
PARAMS = ChainParams(protocol_fee_bps=200, audit=AUDIT)


class AuditChain:
    def __init__(self, params: ChainParams = PARAMS) -> None:
        keys = [AUTHORITY, CLIENT, COORDINATOR, *MINERS]
        genesis = Genesis(
            chain_id=CHAIN,
            genesis_time_ms=1,
            authorities=[AUTHORITY.address],
            balances=[*(GenesisBalance(k.address, START) for k in keys), GenesisBalance(REWARD_POOL_ADDRESS, 10_000)],
            params=params,
        )
        self.params = params
        self.state: ChainState = genesis_state(genesis)
        self.head: BlockHeader = genesis_block(genesis, self.state).header
        self.supply = self.state.total_supply()
        self.nonces: dict[str, int] = {}

    def tx(self, key: KeyPair, kind: type, **fields: object) -> Tx:
        nonce = self.nonces.get(key.address, 0)
        self.nonces[key.address] = nonce + 1
        return sign_tx(kind(chain_id=CHAIN, sender=key.address, nonce=nonce, fee=10, **fields), key)

    def block(self, *txs: Tx, dropped: TxRejection | None = None) -> None:
        outcome = build_block(
            self.state, self.head, [verify_tx(t) for t in txs], AUTHORITY, self.head.time_ms + 1000, self.params
        )
        reasons = [e.reason for _, e in outcome.dropped]
        assert reasons == ([] if dropped is None else [dropped.value]), reasons
        for vtx, _ in outcome.dropped:
            self.nonces[vtx.tx.sender] -= 1
        commit_delta(self.state, outcome.delta, outcome.tree)
        self.head = outcome.block.header
        assert self.state.total_supply() + self.state.audits.burned == self.supply, "supply not conserved"

    def balance(self, who: KeyPair | str) -> int:
        return self.state.get_account(who if isinstance(who, str) else who.address).balance

    def audit(self, job_id: str) -> Audit:
        found = get_audit(self.state.audits, job_id)
        assert found is not None, f"{job_id} was not selected"
        return found

    def bond(self, *miners: KeyPair, amount: int = 10_000) -> None:
        self.block(*(self.tx(m, BondMiner, amount=amount, models=[DIGEST]) for m in miners))

    def settle(self, job_id: str, miner: KeyPair, output_hash: str) -> None:
        """A paid job: escrow, then the coordinator's settle with the miner's receipt."""
        self.block(self.tx(CLIENT, OpenEscrow, job_id=job_id, coordinator=COORDINATOR.address, amount=100_000,
                           deadline_height=self.head.height + 50))  # fmt: skip
        unsigned = Receipt(
            chain_id=CHAIN, job_id=job_id, miner=miner.address, client=CLIENT.address,
            coordinator=COORDINATOR.address, model="m", model_digest=DIGEST, input_hash="00" * 32,
            output_hash=output_hash, units=ReceiptUnits(prompt_tokens=10, completion_tokens=90, compute_ms=900),
            unit_price=100, total_price=10_000, started_at_ms=1_000, finished_at_ms=2_000,
        )  # fmt: skip
        receipt = countersign_receipt(sign_receipt_as_miner(unsigned, miner), COORDINATOR)
        self.block(self.tx(COORDINATOR, SettleJob, receipt=receipt))

    def key_of(self, address: str) -> KeyPair:
        return next(k for k in (CLIENT, COORDINATOR, *MINERS) if k.address == address)
