import { describe, expect, it } from 'vitest';
import { bytesToHex } from '../src/lib/bytes';
import { decryptKey, encryptKey, parseImportedKey } from '../src/lib/keystore';
import { generateKey, keyFromSeed } from '../src/lib/signer';

describe('keystore', () => {
  it('encrypts and decrypts a key with its passphrase only', async () => {
    const key = generateKey();
    const stored = await encryptKey(key, 'correct horse', 1000);
    expect(JSON.stringify(stored)).not.toContain(bytesToHex(key.seed));
    const back = await decryptKey(stored, 'correct horse');
    expect(back.address).toBe(key.address);
    expect(bytesToHex(back.seed)).toBe(bytesToHex(key.seed));
    await expect(decryptKey(stored, 'wrong horse!')).rejects.toThrow(/wrong passphrase/);
  });

  it('detects a keystore whose address was swapped', async () => {
    const stored = await encryptKey(generateKey(), 'passphrase', 1000);
    const other = generateKey();
    await expect(decryptKey({ ...stored, address: other.address }, 'passphrase')).rejects.toThrow();
  });

  it('refuses short passphrases', async () => {
    await expect(encryptKey(generateKey(), 'short', 1000)).rejects.toThrow(/8 characters/);
  });

  it('imports seeds and key files, checking the claimed address', () => {
    const key = keyFromSeed(new Uint8Array(32).fill(7));
    const seed = bytesToHex(key.seed);
    expect(parseImportedKey(seed).address).toBe(key.address);
    expect(parseImportedKey(JSON.stringify({ address: key.address, seed })).address).toBe(key.address);
    const wrong = keyFromSeed(new Uint8Array(32).fill(8)).address;
    expect(() => parseImportedKey(JSON.stringify({ address: wrong, seed }))).toThrow(/does not match/);
    expect(() => parseImportedKey('{"seed":"00"}')).toThrow(/32-byte/);
    expect(() => parseImportedKey('hello')).toThrow();
  });
});
