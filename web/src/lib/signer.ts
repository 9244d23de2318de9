/**
 * Ed25519 keys and domain-separated signatures, as aitbc.protocol.crypto: every signature
 * signs `"AITBC-SIG-v1\0" | u8 len | chain_id | u8 len | kind | message`. The secret seed
 * never leaves this module's callers in the browser; nothing here does I/O.
 */
import * as ed from '@noble/ed25519';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { encodeAddress } from './address';
import { bytesToHex, concatBytes, utf8 } from './bytes';

ed.hashes.sha512 = sha512;

export type SigningKind = 'tx' | 'receipt' | 'receipt-cosign';

export function signingDomain(chainId: string, kind: SigningKind): Uint8Array {
  const chain = utf8(chainId);
  const purpose = utf8(kind);
  if (chain.length > 255) throw new Error('chain id longer than 255 bytes');
  return concatBytes(utf8('AITBC-SIG-v1\0'), Uint8Array.of(chain.length), chain, Uint8Array.of(purpose.length), purpose);
}

export interface KeyPair {
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly address: string;
}

export function keyFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new Error('an Ed25519 seed is 32 bytes');
  const publicKey = ed.getPublicKey(seed);
  return { seed, publicKey, address: encodeAddress(publicKey) };
}

export function generateKey(): KeyPair {
  return keyFromSeed(crypto.getRandomValues(new Uint8Array(32)));
}

export function sign(key: KeyPair, chainId: string, kind: SigningKind, message: Uint8Array): Uint8Array {
  return ed.sign(concatBytes(signingDomain(chainId, kind), message), key.seed);
}

export function verify(
  publicKey: Uint8Array,
  chainId: string,
  kind: SigningKind,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    return ed.verify(signature, concatBytes(signingDomain(chainId, kind), message), publicKey);
  } catch {
    return false;
  }
}

export const sha256Hex = (data: Uint8Array): string => bytesToHex(sha256(data));
