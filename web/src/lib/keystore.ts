/**
 * The browser keystore: an Ed25519 seed encrypted with a passphrase (PBKDF2-SHA256 →
 * AES-256-GCM, WebCrypto) and kept in localStorage. The seed is decrypted into memory
 * only to sign; it is never sent anywhere. WebCrypto needs a secure context (https, or
 * http on localhost / 127.0.0.1), which is where `aitbc web serve` listens by default.
 */
import { bytesToHex, hexToBytes, utf8 } from './bytes';
import { type KeyPair, keyFromSeed } from './signer';

export const KEYSTORE_VERSION = 1;
export const DEFAULT_ITERATIONS = 310_000;

export interface EncryptedKey {
  version: number;
  address: string;
  kdf: 'pbkdf2-sha256';
  iterations: number;
  salt: string;
  iv: string;
  ciphertext: string;
}

async function deriveKey(passphrase: string, salt: Uint8Array, iterations: number): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey('raw', utf8(passphrase) as BufferSource, 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt: salt as BufferSource, iterations },
    base,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

export async function encryptKey(
  key: KeyPair,
  passphrase: string,
  iterations: number = DEFAULT_ITERATIONS,
): Promise<EncryptedKey> {
  if (passphrase.length < 8) throw new Error('the passphrase must have at least 8 characters');
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const aes = await deriveKey(passphrase, salt, iterations);
  const additional = utf8(key.address) as BufferSource;
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: iv as BufferSource, additionalData: additional }, aes, key.seed as BufferSource);
  return {
    version: KEYSTORE_VERSION,
    address: key.address,
    kdf: 'pbkdf2-sha256',
    iterations,
    salt: bytesToHex(salt),
    iv: bytesToHex(iv),
    ciphertext: bytesToHex(new Uint8Array(ct)),
  };
}

export async function decryptKey(stored: EncryptedKey, passphrase: string): Promise<KeyPair> {
  if (stored.version !== KEYSTORE_VERSION || stored.kdf !== 'pbkdf2-sha256') {
    throw new Error('unsupported keystore format');
  }
  const aes = await deriveKey(passphrase, hexToBytes(stored.salt), stored.iterations);
  let seed: Uint8Array;
  try {
    const plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: hexToBytes(stored.iv) as BufferSource, additionalData: utf8(stored.address) as BufferSource },
      aes,
      hexToBytes(stored.ciphertext) as BufferSource,
    );
    seed = new Uint8Array(plain);
  } catch {
    throw new Error('wrong passphrase (or a damaged keystore)');
  }
  const key = keyFromSeed(seed);
  if (key.address !== stored.address) throw new Error('the keystore seed does not match its address');
  return key;
}

/** Parse what a person imports: a 64-hex-digit seed, or an `aitbc keys new` key file ({address, seed}). */
export function parseImportedKey(text: string): KeyPair {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return keyFromSeed(hexToBytes(trimmed));
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    throw new Error('paste a 64-hex-digit seed or the contents of a key file');
  }
  const file = parsed as { address?: unknown; seed?: unknown };
  if (typeof file.seed !== 'string' || !/^[0-9a-fA-F]{64}$/.test(file.seed)) {
    throw new Error('the key file has no 32-byte hex seed');
  }
  const key = keyFromSeed(hexToBytes(file.seed));
  if (typeof file.address === 'string' && file.address !== key.address) {
    throw new Error(`the seed does not match the address the file claims (${file.address})`);
  }
  return key;
}

const STORAGE_KEY = 'aitbc.keystore.v1';

export function loadStoredKey(storage: Storage = localStorage): EncryptedKey | null {
  const raw = storage.getItem(STORAGE_KEY);
  if (!raw) return null;
  try {
    return JSON.parse(raw) as EncryptedKey;
  } catch {
    return null;
  }
}

export function saveStoredKey(key: EncryptedKey | null, storage: Storage = localStorage): void {
  if (key === null) storage.removeItem(STORAGE_KEY);
  else storage.setItem(STORAGE_KEY, JSON.stringify(key));
}
