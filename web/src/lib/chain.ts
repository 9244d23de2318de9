/** Signing and sending txs from the browser: build, sign with the unlocked key, send, wait. */
import type { Api } from '../api/client';
import type { TxStatus } from '../api/types';
import { computeEscrowAmount, DEFAULT_DEADLINE_BLOCKS, newJobId } from './pricing';
import type { KeyPair } from './signer';
import { type OpenEscrow, type TopUpDeposit, type Transfer, type WithdrawDeposit, signTx } from './tx';

export async function waitForTx(api: Api, hash: string, timeoutMs = 60_000): Promise<TxStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await api.txStatus(hash);
    if (status.status === 'committed' || status.status === 'rejected') return status;
    if (Date.now() > deadline) throw new Error(`tx ${hash} not committed after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

export async function sendTransfer(api: Api, key: KeyPair, recipient: string, amount: number, memo: string) {
  const [chain, account] = await Promise.all([api.chain(), api.account(key.address)]);
  const tx: Transfer = {
    type: 'transfer',
    chain_id: chain.chain_id,
    sender: key.address,
    nonce: account.pending_nonce ?? account.nonce,
    fee: chain.params.min_fee,
    recipient,
    amount,
    memo,
  };
  const hash = await api.sendTx(signTx(tx, key));
  return { hash, status: await waitForTx(api, hash) };
}

export interface OpenedEscrow {
  jobId: string;
  amount: number;
  txHash: string;
  height: number;
  deadlineHeight: number;
}

/** Lock `maxPrice` + protocol fee for a new job, signed in the browser, and wait for the commit. */
export async function openEscrow(api: Api, key: KeyPair, maxPrice: number): Promise<OpenedEscrow> {
  const [chain, account, health] = await Promise.all([api.chain(), api.account(key.address), api.health()]);
  const jobId = newJobId();
  const amount = computeEscrowAmount(maxPrice, chain.params.protocol_fee_bps);
  const deadlineHeight = chain.height + DEFAULT_DEADLINE_BLOCKS;
  const tx: OpenEscrow = {
    type: 'open_escrow',
    chain_id: chain.chain_id,
    sender: key.address,
    nonce: account.pending_nonce ?? account.nonce,
    fee: chain.params.min_fee,
    job_id: jobId,
    coordinator: health.coordinator,
    amount,
    deadline_height: deadlineHeight,
  };
  const txHash = await api.sendTx(signTx(tx, key));
  const status = await waitForTx(api, txHash);
  if (status.status !== 'committed') throw new Error(`the escrow tx was ${status.status}: ${status.reason ?? status.error ?? ''}`);
  return { jobId, amount, txHash, height: status.height ?? 0, deadlineHeight };
}

/** Add `amount` to a deposit (anyone may), or ask for `amount` back (its owner only; paid out after the
 * chain's withdrawal delay). Signed here, sent to the node, waited for. */
export async function changeDeposit(api: Api, key: KeyPair, kind: 'top_up_deposit' | 'withdraw_deposit', depositId: string, amount: number) {
  const [chain, account] = await Promise.all([api.chain(), api.account(key.address)]);
  const tx: TopUpDeposit | WithdrawDeposit = {
    type: kind,
    chain_id: chain.chain_id,
    sender: key.address,
    nonce: account.pending_nonce ?? account.nonce,
    fee: chain.params.min_fee,
    deposit_id: depositId,
    amount,
  };
  const hash = await api.sendTx(signTx(tx, key));
  const status = await waitForTx(api, hash);
  if (status.status !== 'committed') throw new Error(`the ${kind} tx was ${status.status}: ${status.reason ?? status.error ?? ''}`);
  return { hash, height: status.height ?? 0 };
}
