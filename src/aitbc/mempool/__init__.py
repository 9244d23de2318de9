"""Pure mempool: admission, per-sender nonce order, fee priority, bounded size."""

from aitbc.mempool.pool import Mempool

__all__ = ["Mempool"]
