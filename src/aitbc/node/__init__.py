"""The chain node shell: store, block production, JSON-RPC/REST/WebSocket."""
