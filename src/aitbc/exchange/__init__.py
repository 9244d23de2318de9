"""The BTC <-> AITBC trade exchange (shell): ledger database, users and 2FA, REST + WebSocket API,
Bitcoin deposits and withdrawals, AITBC deposits and withdrawals over the chain.

Matching and ledger rules are pure (``aitbc.market.orderbook``, ``ledger``, ``trading``); this package
stores their events, authenticates people and talks to Bitcoin and the AITBC node. docs/exchange.md.
"""
