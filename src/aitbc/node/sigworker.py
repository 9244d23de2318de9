"""A signature-check worker process (``python -m aitbc.node.sigworker``), driven by ``SignatureVerifier``.

Reads requests on stdin and answers each on stdout, until stdin closes:

    request  u32 body length | u32 count | body = count x (u32 len | signed message | u32 len | public key)
    answer   count bytes, 0x01 where the signature is valid, 0x00 where not

It imports nothing but the crypto module, ignores SIGINT (Ctrl-C reaches the
whole process group; the node decides when its workers stop) and exits when
the node closes the pipe or dies.
"""

from __future__ import annotations

import signal
import struct
import sys

from aitbc.protocol.crypto import check_signatures

_U32 = struct.Struct(">I")


def parse_request(body: bytes, count: int) -> list[tuple[bytes, bytes]]:
    checks: list[tuple[bytes, bytes]] = []
    pos = 0
    for _ in range(count):
        (n,) = _U32.unpack_from(body, pos)
        message = body[pos + 4 : pos + 4 + n]
        pos += 4 + n
        (n,) = _U32.unpack_from(body, pos)
        checks.append((message, body[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return checks


def encode_request(checks: list[tuple[bytes, bytes]]) -> bytes:
    parts = [b""]
    for message, public_key in checks:
        parts += (_U32.pack(len(message)), message, _U32.pack(len(public_key)), public_key)
    body = b"".join(parts)
    return _U32.pack(len(body)) + _U32.pack(len(checks)) + body


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            return
        length, count = _U32.unpack_from(header, 0)[0], _U32.unpack_from(header, 4)[0]
        body = stdin.read(length)
        if len(body) < length:
            return
        stdout.write(bytes(check_signatures(parse_request(body, count))))
        stdout.flush()


if __name__ == "__main__":
    main()
