/**
 * Addresses: bech32m (BIP-350) over a 32-byte payload with prefix `ait`, exactly as
 * aitbc.protocol.address. For a key account the payload is the Ed25519 public key.
 */

export const HRP = 'ait';
const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const BECH32M_CONST = 0x2bc830a3;
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = (((chk & 0x1ffffff) << 5) ^ v) >>> 0;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk = (chk ^ GENERATOR[i]!) >>> 0;
  }
  return chk;
}

function hrpExpand(hrp: string): number[] {
  const codes = [...hrp].map((c) => c.charCodeAt(0));
  return [...codes.map((c) => c >> 5), 0, ...codes.map((c) => c & 31)];
}

function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const maxv = (1 << to) - 1;
  for (let i = 0; i < data.length; i++) {
    acc = (acc << from) | data[i]!;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & maxv);
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits) out.push((acc << (to - bits)) & maxv);
  } else if (bits >= from || ((acc << (to - bits)) & maxv)) {
    throw new Error('address has non-zero padding bits');
  }
  return out;
}

export function encodeAddress(payload: Uint8Array): string {
  if (payload.length !== 32) throw new Error(`address payload must be 32 bytes, got ${payload.length}`);
  const data = convertBits(payload, 8, 5, true);
  const pm = polymod([...hrpExpand(HRP), ...data, 0, 0, 0, 0, 0, 0]) ^ BECH32M_CONST;
  const checksum = Array.from({ length: 6 }, (_, i) => (pm >>> (5 * (5 - i))) & 31);
  return HRP + '1' + [...data, ...checksum].map((d) => CHARSET[d]).join('');
}

export function decodeAddress(address: string): Uint8Array {
  if (!address) throw new Error('address must be a non-empty string');
  if (address.toLowerCase() !== address) throw new Error('address must be lowercase');
  const sep = address.lastIndexOf('1');
  if (sep < 0 || address.slice(0, sep) !== HRP) throw new Error(`address must start with '${HRP}1'`);
  const rest = address.slice(sep + 1);
  if (rest.length < 6) throw new Error('address is too short');
  const data = [...rest].map((c) => {
    const i = CHARSET.indexOf(c);
    if (i < 0) throw new Error(`address has a character outside the bech32 alphabet: '${c}'`);
    return i;
  });
  if ((polymod([...hrpExpand(HRP), ...data]) >>> 0) !== BECH32M_CONST) {
    throw new Error('address checksum does not match (typo?)');
  }
  const payload = Uint8Array.from(convertBits(data.slice(0, -6), 5, 8, false));
  if (payload.length !== 32) throw new Error(`address payload must be 32 bytes, got ${payload.length}`);
  return payload;
}

export function isValidAddress(address: string): boolean {
  try {
    decodeAddress(address);
    return true;
  } catch {
    return false;
  }
}
