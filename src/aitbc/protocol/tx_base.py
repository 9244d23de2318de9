"""``TxBase``: the fields and checks every tx kind shares (its own module so tx kinds can live beside it)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from aitbc.protocol.address import is_valid_address
from aitbc.protocol.types import U64, Address, Amount, ChainId


class TxBase(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    chain_id: ChainId
    sender: Address
    nonce: U64
    fee: Amount

    def __post_init__(self) -> None:
        # msgspec checks the alphabet; the bech32m checksum is checked here, on every decode.
        for name in self.__address_fields__:
            if not is_valid_address(getattr(self, name)):
                raise ValueError(f"`{name}` is not a valid address (bad checksum or length)")
        # A str holding a lone surrogate (possible from a decoded JSON object) has no UTF-8 bytes to sign.
        for name in self.__text_fields__:
            try:
                getattr(self, name).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"`{name}` is not valid unicode (lone surrogate)") from None

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender",)
    __text_fields__: ClassVar[tuple[str, ...]] = ()
