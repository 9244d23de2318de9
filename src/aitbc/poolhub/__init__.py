"""The pool hub: miner registry, scoring and matching as a service (``aitbc poolhub run``).

A thin shell over ``aitbc.market.scoring``: registry backends (SQLite; Redis for live
state + PostgreSQL for history), an in-memory ``MinerIndex`` for fast matching, and the
HTTP API the coordinator, the CLI and the web app use.
"""
