/**
 * The canonical encoding (ACE v1) of the txs the browser signs, byte for byte as
 * aitbc.protocol.codec: version u8 | tag str | fields in declaration order, with u64 as
 * 8 bytes big-endian, str as u32 length | UTF-8, address as its 32 payload bytes and
 * hex as u32 length | raw bytes. Only the fields the web app signs are modelled.
 */
import { decodeAddress } from './address';
import { concatBytes, hexToBytes, utf8 } from './bytes';

export const ENCODING_VERSION = 1;
const U64_MAX = (1n << 64n) - 1n;

export class Writer {
  private parts: Uint8Array[] = [];

  u8(v: number): this {
    this.parts.push(Uint8Array.of(v));
    return this;
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`${v} does not fit in u32`);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, false);
    this.parts.push(b);
    return this;
  }

  u64(v: bigint | number): this {
    const n = BigInt(v);
    if (n < 0n || n > U64_MAX) throw new Error(`integer ${n} does not fit in u64`);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, n, false);
    this.parts.push(b);
    return this;
  }

  str(s: string): this {
    if (/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''))) {
      throw new Error('string is not encodable as UTF-8 (lone surrogate)');
    }
    const raw = utf8(s);
    return this.u32(raw.length).raw(raw);
  }

  hex(h: string): this {
    const raw = hexToBytes(h);
    return this.u32(raw.length).raw(raw);
  }

  address(a: string): this {
    return this.raw(decodeAddress(a));
  }

  raw(b: Uint8Array): this {
    this.parts.push(b);
    return this;
  }

  bytes(): Uint8Array {
    return concatBytes(...this.parts);
  }
}
