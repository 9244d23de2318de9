/**
 * The txs the web app signs in the browser — `transfer`, `open_escrow`, `top_up_deposit`,
 * `withdraw_deposit` — with the exact canonical bytes, hash and signature of aitbc.protocol.tx
 * (checked against the protocol's vectors in tests/vectors/). Signing bytes are the encoding
 * without `signature`.
 */
import { bytesToHex } from './bytes';
import { ENCODING_VERSION, Writer } from './codec';
import { type KeyPair, sha256Hex, sign } from './signer';

interface TxBase {
  chain_id: string;
  sender: string;
  nonce: number;
  fee: number;
  signature?: string;
}

export interface Transfer extends TxBase {
  type: 'transfer';
  recipient: string;
  amount: number;
  memo: string;
}

export interface OpenEscrow extends TxBase {
  type: 'open_escrow';
  job_id: string;
  coordinator: string;
  amount: number;
  deadline_height: number;
}

export interface TopUpDeposit extends TxBase {
  type: 'top_up_deposit';
  deposit_id: string;
  amount: number;
}

export interface WithdrawDeposit extends TxBase {
  type: 'withdraw_deposit';
  deposit_id: string;
  amount: number;
}

export type Tx = Transfer | OpenEscrow | TopUpDeposit | WithdrawDeposit;

function writeBody(w: Writer, tx: Tx): Writer {
  w.u8(ENCODING_VERSION).str(tx.type).str(tx.chain_id).address(tx.sender).u64(tx.nonce).u64(tx.fee);
  switch (tx.type) {
    case 'transfer':
      return w.address(tx.recipient).u64(tx.amount).str(tx.memo);
    case 'open_escrow':
      return w.str(tx.job_id).address(tx.coordinator).u64(tx.amount).u64(tx.deadline_height);
    case 'top_up_deposit':
    case 'withdraw_deposit':
      return w.str(tx.deposit_id).u64(tx.amount);
  }
}

export function txSigningBytes(tx: Tx): Uint8Array {
  return writeBody(new Writer(), tx).bytes();
}

export function txBytes(tx: Tx): Uint8Array {
  if (!tx.signature) throw new Error('the tx is not signed');
  return writeBody(new Writer(), tx).hex(tx.signature).bytes();
}

export function txHash(tx: Tx): string {
  return sha256Hex(txBytes(tx));
}

export function signTx<T extends Tx>(tx: T, key: KeyPair): T {
  if (key.address !== tx.sender) throw new Error('key does not belong to the tx sender');
  const signature = bytesToHex(sign(key, tx.chain_id, 'tx', txSigningBytes(tx)));
  return { ...tx, signature };
}
