"""The canonical byte encoding (ACE v1): the only bytes AITBC ever hashes or signs.

Why a schema-driven binary layout instead of canonical JSON: the bytes are a
pure function of the typed value (no key order, whitespace, number or unicode
escape ambiguity), and they are compact and quick to produce.

Layout, for a top-level message (``encode``)::

    version:u8 (=1) | tag:str | body

and a body is the struct's fields in declaration order, each as:

    u64      8 bytes, big-endian               (Wire.U64)
    bool     1 byte, 0x00 or 0x01              (Wire.BOOL)
    str      u32 length | UTF-8 bytes          (Wire.STR)
    hex      u32 length | raw bytes            (Wire.HEX: a hex string field)
    hash32   32 raw bytes                      (Wire.HASH32)
    address  32 raw bytes of the bech32m payload  (Wire.ADDRESS)
    optional 0x00, or 0x01 | value
    list     u32 count | items
    struct   its body (nested structs carry no version)
    union    tag:str | body of the tagged struct

Integers are fixed width, so every value has exactly one encoding; decoding
rejects trailing bytes, bad UTF-8, non-0/1 booleans and unknown tags, so
``decode(encode(x)) == x`` and ``encode(decode(b)) == b`` for accepted ``b``.
The tag of a struct is its msgspec tag (``type`` field in JSON) or its class
name. A new layout gets a new version byte; old versions stay decodable.
"""

from __future__ import annotations

import operator
import struct
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, Union, get_args, get_origin, get_type_hints

import msgspec

from aitbc.protocol.address import decode_address, encode_address
from aitbc.protocol.errors import EncodingError, InvalidAddress
from aitbc.protocol.types import Wire

ENCODING_VERSION: Final = 1
_VERSION_BYTE: Final = bytes([ENCODING_VERSION])

T = TypeVar("T", bound=msgspec.Struct)

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes, int], tuple[Any, int]]

_pack_u64 = struct.Struct(">Q").pack
_pack_u32 = struct.Struct(">I").pack
_unpack_u64 = struct.Struct(">Q").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from


def struct_tag(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    return tag if isinstance(tag, str) else cls.__name__


def _enc_str(value: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodingError("string is not encodable as UTF-8 (lone surrogate)") from None
    return _pack_u32(len(raw)) + raw


def _dec_str(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _dec_bytes(data, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise EncodingError("string is not valid UTF-8") from None


def _dec_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(data):
        raise EncodingError("truncated length prefix")
    (length,) = _unpack_u32(data, pos)
    pos += 4
    if pos + length > len(data):
        raise EncodingError("truncated bytes")
    return data[pos : pos + length], pos + length


def _enc_u64(value: int) -> bytes:
    try:
        return _pack_u64(value)
    except struct.error:
        raise EncodingError(f"integer {value} does not fit in u64") from None


def _dec_u64(data: bytes, pos: int) -> tuple[int, int]:
    if pos + 8 > len(data):
        raise EncodingError("truncated u64")
    return _unpack_u64(data, pos)[0], pos + 8


def _enc_bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _dec_bool(data: bytes, pos: int) -> tuple[bool, int]:
    if pos >= len(data) or data[pos] not in (0, 1):
        raise EncodingError("boolean must be 0x00 or 0x01")
    return data[pos] == 1, pos + 1


def _enc_hex(value: str) -> bytes:
    raw = bytes.fromhex(value)
    return _pack_u32(len(raw)) + raw


def _dec_hex(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _dec_bytes(data, pos)
    return raw.hex(), pos


def _enc_hash32(value: str) -> bytes:
    raw = bytes.fromhex(value)
    if len(raw) != 32:
        raise EncodingError("hash must be 32 bytes")
    return raw


def _dec_hash32(data: bytes, pos: int) -> tuple[str, int]:
    if pos + 32 > len(data):
        raise EncodingError("truncated hash")
    return data[pos : pos + 32].hex(), pos + 32


def _enc_address(value: str) -> bytes:
    try:
        return decode_address(value)
    except InvalidAddress as exc:
        raise EncodingError(f"bad address {value!r}: {exc.message}") from None


def _dec_address(data: bytes, pos: int) -> tuple[str, int]:
    if pos + 32 > len(data):
        raise EncodingError("truncated address")
    return encode_address(data[pos : pos + 32]), pos + 32


_PRIMITIVES: Final[dict[Wire, tuple[Encoder, Decoder]]] = {
    Wire.U64: (_enc_u64, _dec_u64),
    Wire.BOOL: (_enc_bool, _dec_bool),
    Wire.STR: (_enc_str, _dec_str),
    Wire.HEX: (_enc_hex, _dec_hex),
    Wire.HASH32: (_enc_hash32, _dec_hash32),
    Wire.ADDRESS: (_enc_address, _dec_address),
}


class _Compiled(typing.NamedTuple):
    names: tuple[str, ...]
    encoders: tuple[Encoder, ...]
    decoders: tuple[Decoder, ...]
    encode_body: Encoder
    """The body encoder specialized for this struct (see ``_specialize``)."""
    prefix: bytes
    """Version byte and tag: what ``encode`` puts before the body."""


_compiled: dict[tuple[type[msgspec.Struct], frozenset[str]], _Compiled] = {}


def _codec_for(tp: Any) -> tuple[Encoder, Decoder]:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = get_args(tp)
        for extra in extras:
            if isinstance(extra, Wire):
                return _PRIMITIVES[extra]
        return _codec_for(base)
    if tp is bool:
        return _PRIMITIVES[Wire.BOOL]
    if tp is str:
        return _PRIMITIVES[Wire.STR]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _struct_codec(tp)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        args = get_args(tp)
        item_enc, item_dec = _codec_for(args[0])

        def enc_list(values: Sequence[Any]) -> bytes:
            return _pack_u32(len(values)) + b"".join(item_enc(v) for v in values)

        def dec_list(data: bytes, pos: int) -> tuple[Any, int]:
            if pos + 4 > len(data):
                raise EncodingError("truncated list count")
            (count,) = _unpack_u32(data, pos)
            pos += 4
            if count > len(data) - pos:
                raise EncodingError("list count exceeds the remaining bytes")
            items = []
            for _ in range(count):
                item, pos = item_dec(data, pos)
                items.append(item)
            return (tuple(items) if origin is tuple else items), pos

        return enc_list, dec_list
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) != len(get_args(tp)):  # Optional[X]
            inner = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
            inner_enc, inner_dec = _codec_for(inner)

            def enc_opt(value: Any) -> bytes:
                return b"\x00" if value is None else b"\x01" + inner_enc(value)

            def dec_opt(data: bytes, pos: int) -> tuple[Any, int]:
                present, pos = _dec_bool(data, pos)
                return inner_dec(data, pos) if present else (None, pos)

            return enc_opt, dec_opt
        return _union_codec(members)
    raise TypeError(f"type {tp!r} has no canonical encoding; annotate it with a Wire marker")


def _union_codec(members: list[Any]) -> tuple[Encoder, Decoder]:
    by_tag: dict[str, type[msgspec.Struct]] = {}
    for member in members:
        if not (isinstance(member, type) and issubclass(member, msgspec.Struct)):
            raise TypeError("unions must be of tagged structs")
        by_tag[struct_tag(member)] = member

    def enc_union(value: Any) -> bytes:
        return _enc_str(struct_tag(type(value))) + encode_body(value)

    def dec_union(data: bytes, pos: int) -> tuple[Any, int]:
        tag, pos = _dec_str(data, pos)
        cls = by_tag.get(tag)
        if cls is None:
            raise EncodingError(f"unknown tag {tag!r}")
        return _decode_body(cls, data, pos)

    return enc_union, dec_union


def _struct_codec(cls: type[msgspec.Struct]) -> tuple[Encoder, Decoder]:
    return (lambda value: encode_body(value)), (lambda data, pos: _decode_body(cls, data, pos))


def _wire_of(tp: Any) -> Wire | None:
    """The primitive layout ``_codec_for`` picks for ``tp``, or None for a composite type."""
    if get_origin(tp) is typing.Annotated:
        base, *extras = get_args(tp)
        for extra in extras:
            if isinstance(extra, Wire):
                return extra
        return _wire_of(base)
    if tp is bool:
        return Wire.BOOL
    if tp is str:
        return Wire.STR
    return None


def _specialize(names: tuple[str, ...], wires: list[Wire | None], encoders: tuple[Encoder, ...]) -> Encoder:
    """One straight-line function encoding the fields of one struct layout.

    It produces exactly the bytes of the generic per-field loop (``_encode_fields``), only
    faster: the fields are read with one ``attrgetter``, runs of u64 fields are packed by one
    ``struct`` call, strings and addresses are inlined. On any error it reruns the generic
    loop, so a bad value fails with the very same exception as before.
    """
    namespace: dict[str, Any] = {
        "_get": operator.attrgetter(*names) if names else None,
        "_p4": _pack_u32,
        "_addr": decode_address,
    }
    values = [f"v{i}" for i in range(len(names))]
    pre: list[str] = []
    parts: list[str] = []
    run: list[str] = []

    def flush_u64_run() -> None:
        if run:
            namespace[f"_pack{len(run)}"] = struct.Struct(">" + "Q" * len(run)).pack
            parts.append(f"_pack{len(run)}({', '.join(run)})")
            run.clear()

    for i, wire in enumerate(wires):
        if wire is Wire.U64:
            run.append(values[i])
            continue
        flush_u64_run()
        if wire is Wire.STR:
            pre.append(f"b{i} = v{i}.encode('utf-8')")
            parts += [f"_p4(len(b{i}))", f"b{i}"]
        elif wire is Wire.ADDRESS:
            parts.append(f"_addr(v{i})")
        else:
            namespace[f"_e{i}"] = encoders[i]
            parts.append(f"_e{i}(v{i})")
    flush_u64_run()
    if len(names) > 1:
        pre.insert(0, f"{', '.join(values)} = _get(obj)")
    elif names:
        pre.insert(0, "v0 = _get(obj)")
    body = "\n".join(f"        {line}" for line in pre)
    source = (
        "def encode_body(obj):\n"
        "    try:\n"
        f"{body}\n"
        f"        return b''.join(({', '.join(parts)}{',' if len(parts) == 1 else ''}))\n"
        "    except Exception:\n"
        "        return _slow(obj)\n"
    )
    if not parts:
        source = "def encode_body(obj):\n    return b''\n"
    namespace["_slow"] = lambda obj: _encode_fields(obj, names, encoders)
    exec(compile(source, f"<canonical encoder {names!r}>", "exec"), namespace)  # noqa: S102 - generated from the schema
    fn: Encoder = namespace["encode_body"]
    return fn


def _encode_fields(obj: msgspec.Struct, names: tuple[str, ...], encoders: tuple[Encoder, ...]) -> bytes:
    """The reference encoder: each field through its own encoder, in declaration order."""
    return b"".join([enc(getattr(obj, name)) for name, enc in zip(names, encoders, strict=True)])


def _compile(cls: type[msgspec.Struct], omit: frozenset[str]) -> _Compiled:
    key = (cls, omit)
    compiled = _compiled.get(key)
    if compiled is None:
        hints = get_type_hints(cls, include_extras=True)
        names = tuple(n for n in cls.__struct_fields__ if n not in omit)
        codecs = [_codec_for(hints[n]) for n in names]
        encoders = tuple(c[0] for c in codecs)
        compiled = _Compiled(
            names,
            encoders,
            tuple(c[1] for c in codecs),
            _specialize(names, [_wire_of(hints[n]) for n in names], encoders),
            _VERSION_BYTE + _enc_str(struct_tag(cls)),
        )
        _compiled[key] = compiled
    return compiled


def encode_body(obj: msgspec.Struct, omit: frozenset[str] = frozenset()) -> bytes:
    """Encode a struct's fields (minus ``omit``) without version or tag."""
    return _compile(type(obj), omit).encode_body(obj)


def encode(obj: msgspec.Struct, omit: frozenset[str] = frozenset()) -> bytes:
    """The canonical bytes of a top-level message."""
    c = _compile(type(obj), omit)
    return c.prefix + c.encode_body(obj)


def _decode_body(cls: type[T], data: bytes, pos: int) -> tuple[T, int]:
    c = _compile(cls, frozenset())
    values: dict[str, Any] = {}
    for name, dec in zip(c.names, c.decoders, strict=True):
        values[name], pos = dec(data, pos)
    try:
        obj = msgspec.convert(values, cls, from_attributes=False)
    except msgspec.ValidationError as exc:
        raise EncodingError(f"decoded {cls.__name__} is invalid: {exc}") from None
    return obj, pos


def decode(cls: Any, data: bytes) -> Any:
    """Decode canonical bytes into ``cls`` (a struct or a union of tagged structs)."""
    if not data or data[0] != ENCODING_VERSION:
        raise EncodingError(f"unsupported encoding version (expected {ENCODING_VERSION})")
    tag, pos = _dec_str(data, 1)
    members = [cls] if isinstance(cls, type) else list(get_args(cls))
    target = next((m for m in members if struct_tag(m) == tag), None)
    if target is None:
        raise EncodingError(f"unknown tag {tag!r}")
    obj, pos = _decode_body(target, data, pos)
    if pos != len(data):
        raise EncodingError(f"{len(data) - pos} trailing bytes after {tag}")
    return obj
