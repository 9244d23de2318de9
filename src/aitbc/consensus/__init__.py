"""Tendermint-style BFT consensus as a pure state machine (no clock, sockets or randomness)."""
