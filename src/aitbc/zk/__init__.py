"""Zero-knowledge tooling around the receipt circuit: the trusted-setup ceremony, its verification,
and the provers. The verifier itself is pure and lives in ``aitbc.protocol.zk``."""
