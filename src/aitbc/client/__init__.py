"""Typed clients of the AITBC services (the Python SDK); transports are injectable."""

from aitbc.client.node import NodeClient

__all__ = ["NodeClient"]
