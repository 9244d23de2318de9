"""Bond bookkeeping whose cost per change does not grow with the number of bonds.

The chain keeps every (validator, delegator) bond in a ``BondIndex``: amounts
grouped by validator with each validator's total and the grand total kept up
to date, so reading or changing one bond, a validator's bonded total or the
locked total is O(1). A block writes through a ``BondOverlay`` (reads fall
through to the committed index) that the state commits with the block; each
bond is its own leaf of the state tree (``aitbc.chain.state``), so the state
root after a block rehashes only the bonds it changed.

``StakingState.bonds`` (the sorted list) remains the persisted and displayed
form; the pure staking rules in ``aitbc.chain.validators`` take a reader of
this module and fall back to an index of that list when none is given.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

import msgspec

from aitbc.protocol.types import Address, Amount


class Bond(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validator: Address
    delegator: Address
    amount: Amount


class BondReader(Protocol):
    def get(self, validator: str, delegator: str) -> int: ...

    def get_bonded(self, validator: str) -> int: ...

    def get_delegations(self, validator: str) -> Mapping[str, int]: ...

    def get_validators(self) -> set[str]: ...

    def get_total(self) -> int: ...

    def iter_bonds(self) -> Iterator[Bond]: ...


class BondWriter(BondReader, Protocol):
    def set(self, validator: str, delegator: str, amount: int) -> None: ...


class BondIndex:
    """Every bond, by validator, with running totals."""

    __slots__ = ("_bonded", "_by_validator", "_keys", "_sorted", "_total")

    def __init__(self, bonds: Iterable[Bond] = ()) -> None:
        self._by_validator: dict[str, dict[str, int]] = {}
        self._bonded: dict[str, int] = {}
        self._total = 0
        self._sorted: list[Bond] | None = None
        """``to_list``'s answer, kept up to date by ``apply`` (None: rebuild it on the next call)."""
        self._keys: list[tuple[str, str]] = []
        for bond in bonds:
            self.set(bond.validator, bond.delegator, bond.amount)

    def get(self, validator: str, delegator: str) -> int:
        return self._by_validator.get(validator, {}).get(delegator, 0)

    def get_bonded(self, validator: str) -> int:
        return self._bonded.get(validator, 0)

    def get_delegations(self, validator: str) -> Mapping[str, int]:
        return self._by_validator.get(validator, {})

    def get_validators(self) -> set[str]:
        return set(self._bonded)

    def get_total(self) -> int:
        return self._total

    def iter_bonds(self) -> Iterator[Bond]:
        for validator in sorted(self._by_validator):
            delegations = self._by_validator[validator]
            for delegator in sorted(delegations):
                yield Bond(validator, delegator, delegations[delegator])

    def set(self, validator: str, delegator: str, amount: int) -> None:
        self._sorted = None
        delegations = self._by_validator.setdefault(validator, {})
        old = delegations.get(delegator, 0)
        if amount:
            delegations[delegator] = amount
        else:
            delegations.pop(delegator, None)
        bonded = self._bonded.get(validator, 0) + amount - old
        if bonded:
            self._bonded[validator] = bonded
        else:
            self._bonded.pop(validator, None)
        if not delegations:
            del self._by_validator[validator]
        self._total += amount - old

    def apply(self, writes: Mapping[tuple[str, str], int]) -> None:
        """A block's writes; the sorted list (if built) follows in O(changes * log bonds) plus list copies."""
        listed, keys = self._sorted, self._keys
        for (validator, delegator), amount in writes.items():
            self.set(validator, delegator, amount)
        if listed is not None:
            self._sorted, self._keys = _merge_writes(listed, keys, writes)

    def to_list(self) -> list[Bond]:
        """The sorted list ``StakingState.bonds`` holds (a new list after each change: a state's list never
        changes once handed out)."""
        if self._sorted is None:
            self._sorted = list(self.iter_bonds())
            self._keys = [(b.validator, b.delegator) for b in self._sorted]
        return self._sorted


def _merge_writes(
    bonds: list[Bond], keys: list[tuple[str, str]], writes: Mapping[tuple[str, str], int]
) -> tuple[list[Bond], list[tuple[str, str]]]:
    """The sorted bond list (and its keys) with ``writes`` applied: new lists, the inputs are untouched; the
    unchanged runs between two written keys are copied as slices, not visited one by one."""
    out, out_keys = [], []
    done = 0
    for key in sorted(writes):
        at = bisect_left(keys, key, done)
        out += bonds[done:at]
        out_keys += keys[done:at]
        if at < len(keys) and keys[at] == key:
            at += 1
        amount = writes[key]
        if amount:
            out.append(Bond(key[0], key[1], amount))
            out_keys.append(key)
        done = at
    out += bonds[done:]
    out_keys += keys[done:]
    return out, out_keys


class BondOverlay:
    """One block's bond writes over a reader (the committed index); O(1) per read and write."""

    __slots__ = ("_base", "_bonded_delta", "_total_delta", "writes", "writes_by_validator")

    def __init__(self, base: BondReader) -> None:
        self._base = base
        self.writes: dict[tuple[str, str], int] = {}
        self.writes_by_validator: dict[str, dict[str, int]] = {}
        self._bonded_delta: dict[str, int] = {}
        self._total_delta = 0

    def get(self, validator: str, delegator: str) -> int:
        written = self.writes.get((validator, delegator))
        return written if written is not None else self._base.get(validator, delegator)

    def get_bonded(self, validator: str) -> int:
        return self._base.get_bonded(validator) + self._bonded_delta.get(validator, 0)

    def get_delegations(self, validator: str) -> Mapping[str, int]:
        written = self.writes_by_validator.get(validator)
        if not written:
            return self._base.get_delegations(validator)
        merged = dict(self._base.get_delegations(validator))
        for delegator, amount in written.items():
            if amount:
                merged[delegator] = amount
            else:
                merged.pop(delegator, None)
        return merged

    def get_validators(self) -> set[str]:
        return {v for v in self._base.get_validators() | set(self.writes_by_validator) if self.get_bonded(v) > 0}

    def get_total(self) -> int:
        return self._base.get_total() + self._total_delta

    def iter_bonds(self) -> Iterator[Bond]:
        for validator in sorted(self.get_validators()):
            delegations = self.get_delegations(validator)
            for delegator in sorted(delegations):
                yield Bond(validator, delegator, delegations[delegator])

    def set(self, validator: str, delegator: str, amount: int) -> None:
        old = self.get(validator, delegator)
        self.writes[(validator, delegator)] = amount
        self.writes_by_validator.setdefault(validator, {})[delegator] = amount
        self._bonded_delta[validator] = self._bonded_delta.get(validator, 0) + amount - old
        self._total_delta += amount - old


_CACHE: dict[int, tuple[list[Bond], BondIndex]] = {}
_CACHE_SIZE = 8


def get_bond_index(bonds: list[Bond]) -> BondIndex:
    """An index of a ``StakingState.bonds`` list (cached by list identity: a state's list never changes)."""
    hit = _CACHE.get(id(bonds))
    if hit is not None and hit[0] is bonds:
        return hit[1]
    index = BondIndex(bonds)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[id(bonds)] = (bonds, index)
    return index
