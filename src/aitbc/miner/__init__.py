"""The miner daemon: register → heartbeat → claim → run on a backend → sign the receipt."""
