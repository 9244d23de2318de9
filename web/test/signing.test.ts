import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeAddress, encodeAddress, isValidAddress } from '../src/lib/address';
import { bytesToHex, hexToBytes } from '../src/lib/bytes';
import { keyFromSeed, signingDomain, verify } from '../src/lib/signer';
import { type OpenEscrow, type Transfer, type Tx, signTx, txBytes, txHash, txSigningBytes } from '../src/lib/tx';

// The protocol's recorded vector: a change there is a consensus change, so the browser must match it exactly.
const vector = JSON.parse(readFileSync(resolve(__dirname, '../../tests/vectors/transfer_v1.json'), 'utf8'));

describe('transfer_v1 vector', () => {
  const sender = keyFromSeed(hexToBytes(vector.sender_seed_hex));
  const recipient = keyFromSeed(hexToBytes(vector.recipient_seed_hex));
  const unsigned: Transfer = { ...vector.tx, signature: undefined };

  it('derives the same addresses', () => {
    expect(sender.address).toBe(vector.tx.sender);
    expect(recipient.address).toBe(vector.tx.recipient);
  });

  it('encodes the exact signing bytes', () => {
    expect(bytesToHex(txSigningBytes(unsigned))).toBe(vector.signing_bytes_hex);
  });

  it('signs with the exact signature, canonical bytes and hash', () => {
    const signed = signTx(unsigned, sender);
    expect(signed.signature).toBe(vector.tx.signature);
    expect(bytesToHex(txBytes(signed))).toBe(vector.canonical_bytes_hex);
    expect(txHash(signed)).toBe(vector.tx_hash);
  });

  it('verifies only for the same chain and purpose', () => {
    const sig = hexToBytes(vector.tx.signature);
    const msg = txSigningBytes(unsigned);
    expect(verify(sender.publicKey, vector.tx.chain_id, 'tx', msg, sig)).toBe(true);
    expect(verify(sender.publicKey, 'another-chain', 'tx', msg, sig)).toBe(false);
    expect(verify(sender.publicKey, vector.tx.chain_id, 'receipt', msg, sig)).toBe(false);
    expect(verify(recipient.publicKey, vector.tx.chain_id, 'tx', msg, sig)).toBe(false);
  });

  it('changes the signing bytes when any field changes', () => {
    const base = bytesToHex(txSigningBytes(unsigned));
    for (const change of [{ nonce: 8 }, { fee: 1001 }, { amount: 12500001 }, { memo: 'hello' }, { chain_id: 'x' }]) {
      expect(bytesToHex(txSigningBytes({ ...unsigned, ...change }))).not.toBe(base);
    }
  });

  it('refuses to sign for another sender', () => {
    expect(() => signTx(unsigned, recipient)).toThrow(/sender/);
  });
});

describe('open_escrow', () => {
  const client = keyFromSeed(new Uint8Array(32));
  const coordinator = keyFromSeed(new Uint8Array(32).fill(1));
  const escrow: OpenEscrow = {
    type: 'open_escrow',
    chain_id: 'aitbc-devnet',
    sender: client.address,
    nonce: 0,
    fee: 100,
    job_id: 'job_0123456789abcdef0123',
    coordinator: coordinator.address,
    amount: 20400,
    deadline_height: 912,
  };

  it('lays out fields in declaration order', () => {
    const bytes = txSigningBytes(escrow);
    // version, tag "open_escrow", chain id, sender, nonce, fee, job_id, coordinator, amount, deadline
    expect(bytes[0]).toBe(1);
    expect(bytesToHex(bytes.slice(1, 5))).toBe('0000000b');
    expect(new TextDecoder().decode(bytes.slice(5, 16))).toBe('open_escrow');
    const tail = bytes.slice(bytes.length - 16);
    expect(new DataView(tail.buffer, tail.byteOffset).getBigUint64(0)).toBe(20400n);
    expect(new DataView(tail.buffer, tail.byteOffset).getBigUint64(8)).toBe(912n);
    expect(bytes.length).toBe(1 + 4 + 11 + 4 + 12 + 32 + 8 + 8 + 4 + 24 + 32 + 8 + 8);
  });

  it('signs verifiably', () => {
    const signed = signTx(escrow, client);
    expect(verify(client.publicKey, 'aitbc-devnet', 'tx', txSigningBytes(escrow), hexToBytes(signed.signature!))).toBe(true);
    expect(txHash(signed)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('rejects values that do not fit', () => {
    expect(() => txSigningBytes({ ...escrow, amount: -1 })).toThrow(/u64/);
    expect(() => txSigningBytes({ ...escrow, coordinator: 'ait1bad' })).toThrow();
  });
});

// Every tx kind the browser signs, against the protocol's generated vectors (tests/vectors/tx/*.json).
describe.each(['transfer', 'open_escrow', 'top_up_deposit', 'withdraw_deposit'])('%s vector', (kind) => {
  const v = JSON.parse(readFileSync(resolve(__dirname, `../../tests/vectors/tx/${kind}.json`), 'utf8'));
  const key = keyFromSeed(hexToBytes(v.sender_seed_hex));
  const unsigned = { ...v.tx, signature: undefined } as Tx;

  it('matches the protocol byte for byte', () => {
    expect(bytesToHex(signingDomain(v.tx.chain_id, 'tx'))).toBe(v.signing_domain_hex);
    expect(bytesToHex(txSigningBytes(unsigned))).toBe(v.signing_bytes_hex);
    const signed = signTx(unsigned, key);
    expect(signed.signature).toBe(v.tx.signature);
    expect(bytesToHex(txBytes(signed))).toBe(v.canonical_bytes_hex);
    expect(txHash(signed)).toBe(v.tx_hash);
  });
});

describe('addresses', () => {
  it('round-trips and checks the checksum', () => {
    const addr = vector.tx.sender as string;
    expect(encodeAddress(decodeAddress(addr))).toBe(addr);
    expect(isValidAddress(addr)).toBe(true);
    const typo = addr.slice(0, -1) + (addr.endsWith('r') ? 'q' : 'r');
    expect(isValidAddress(typo)).toBe(false);
    expect(isValidAddress(addr.toUpperCase())).toBe(false);
    expect(isValidAddress('btc1' + addr.slice(4))).toBe(false);
  });

  it('builds the signing domain like aitbc.protocol.crypto', () => {
    expect(bytesToHex(signingDomain('c', 'tx'))).toBe(bytesToHex(new TextEncoder().encode('AITBC-SIG-v1\0')) + '0163' + '027478');
  });
});
