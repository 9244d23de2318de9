"""Metering the coordinator checks before it countersigns a receipt: the price the miner was assigned at,
and token counts the job can have produced.

The chain checks only that a receipt's arithmetic adds up (total = units x unit price, total <= escrow). A
miner could otherwise charge the job's whole ``max_price`` for any work: quote a higher unit price than it
registered, or claim more tokens than the job allowed or its input holds. So, before paying:

- the receipt's ``unit_price`` is the one recorded on the assignment (the miner's registered price for
  the model it was given, at claim time);
- ``completion_tokens`` are at most the job's ``max_tokens`` (an embedding produces none);
- ``prompt_tokens`` are at most what the coordinator counts for the input: with the model's own
  tokenizer when the coordinator can load it (the built-in model's ships in its package), else a bound no
  tokenizer can pass — one token per UTF-8 byte (byte-level BPE, WordPiece and SentencePiece with byte
  fallback all cover at least one byte per token) — plus a fixed allowance for the chat template's
  markers and default system prompt.

A receipt that fails any of these is an ``InvalidReceipt``: refused, nothing paid, and counted against
the miner as a rejected receipt. The rules are pure: the token counter is an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from aitbc.market.matching import (
    JobRequirements,
    MinerOffer,
    compute_max_units,
    find_served_model,
    get_ineligibility,
)
from aitbc.protocol.job import MAX_EMBED_TEXTS, MAX_MESSAGES
from aitbc.protocol.receipt import InvalidReceipt, Receipt, ReceiptRejection

TEMPLATE_BASE_TOKENS: Final = 64
"""Tokens a chat template may add once per prompt (BOS, a default system prompt, the assistant header)."""
TEMPLATE_TOKENS_PER_MESSAGE: Final = 8
"""Tokens a chat template may add around each message (role markers, separators)."""
TOKENS_PER_EMBED_TEXT: Final = 4
"""Special tokens an embedding tokenizer adds to each text ([CLS], [SEP], …)."""

TokenCounter = Callable[[str], int]
"""Tokens of one piece of text under the model's tokenizer (no special tokens)."""


@dataclass(frozen=True, slots=True)
class MeteringBounds:
    """What the coordinator knows about a job independently of the miner's receipt."""

    unit_price: int | None
    """The unit price recorded on the assignment; None for a job assigned before prices were recorded."""
    max_completion_tokens: int
    max_prompt_tokens: int


def compute_prompt_token_bound(
    job_type: str,
    pieces: Sequence[str],
    count_tokens: TokenCounter | None = None,
    sealed_bytes: int | None = None,
) -> int:
    """The most prompt tokens an honest miner can report for a job whose input texts are ``pieces``
    (an inference prompt or its messages' contents; an embedding's texts).

    ``count_tokens`` is the model's tokenizer when the coordinator has it; without it each UTF-8 byte
    counts as a token. A private job's input is ciphertext the coordinator cannot read: ``sealed_bytes``
    (its plaintext size bound) is counted as bytes, with a template allowance for as many messages as
    the messages limit allows.
    """
    if job_type == "inference":
        if sealed_bytes is not None:
            return sealed_bytes + TEMPLATE_BASE_TOKENS + TEMPLATE_TOKENS_PER_MESSAGE * MAX_MESSAGES
        counted = sum(_count(piece, count_tokens) for piece in pieces)
        return counted + TEMPLATE_BASE_TOKENS + TEMPLATE_TOKENS_PER_MESSAGE * max(1, len(pieces))
    if sealed_bytes is not None:
        return sealed_bytes + TOKENS_PER_EMBED_TEXT * MAX_EMBED_TEXTS
    return sum(_count(piece, count_tokens) + TOKENS_PER_EMBED_TEXT for piece in pieces)


def _count(text: str, count_tokens: TokenCounter | None) -> int:
    if count_tokens is None:
        return len(text.encode("utf-8", "surrogatepass"))
    return count_tokens(text)


def compute_max_completion_tokens(job_type: str, max_tokens: int) -> int:
    """An inference job generates at most ``max_tokens``; embedding, zk-inference and training jobs none."""
    return max_tokens if job_type == "inference" else 0


def verify_receipt_metering(receipt: Receipt, bounds: MeteringBounds) -> None:
    """Raise ``InvalidReceipt`` unless the receipt charges the assigned price for tokens the job can have."""
    # Verify the miner charges the unit price it was assigned at
    if bounds.unit_price is not None and receipt.unit_price != bounds.unit_price:
        raise InvalidReceipt(
            ReceiptRejection.UNIT_PRICE_NOT_ASSIGNED,
            f"unit price {receipt.unit_price} is not the {bounds.unit_price} the job was assigned at",
        )
    # Verify it generated no more than the job allowed
    if receipt.units.completion_tokens > bounds.max_completion_tokens:
        raise InvalidReceipt(
            ReceiptRejection.COMPLETION_TOKENS_ABOVE_MAX,
            f"{receipt.units.completion_tokens} completion tokens; the job allows {bounds.max_completion_tokens}",
        )
    # Verify the prompt holds the tokens it charges for
    if receipt.units.prompt_tokens > bounds.max_prompt_tokens:
        raise InvalidReceipt(
            ReceiptRejection.PROMPT_TOKENS_ABOVE_COUNT,
            f"{receipt.units.prompt_tokens} prompt tokens; the input holds at most {bounds.max_prompt_tokens}",
        )


def compute_min_affordable_price(offers: Sequence[MinerOffer], req: JobRequirements) -> int | None:
    """The least ``max_price`` at which one of ``offers`` may take the job: the cheapest worst case (unit
    price x most billable units) among the miners that fit it in every other way. None when none does (the
    job then waits for such a miner; its price is not what stops it)."""
    unpriced = replace(req, max_price=None)
    costs = []
    for offer in offers:
        if get_ineligibility(offer, unpriced) is not None:
            continue
        served = find_served_model(offer, unpriced)
        if served is not None:
            costs.append(served.unit_price * compute_max_units(unpriced))
    return min(costs, default=None)
