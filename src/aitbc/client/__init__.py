"""Typed clients of the AITBC services (the Python SDK); transports are injectable."""

from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.client.wallet import WalletClient

__all__ = ["CoordinatorClient", "NodeClient", "WalletClient"]
