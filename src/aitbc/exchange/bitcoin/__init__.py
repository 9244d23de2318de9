"""Bitcoin for the exchange (embit): BIP84 deposit addresses from the account xpub, BIP21 URIs, address
checks per network, a ``BitcoinBackend`` protocol (Bitcoin Core JSON-RPC, Esplora HTTP), the deposit
watcher with reorg handling, and withdrawal PSBTs.

Why embit: pure Python with no native build (installs anywhere the exchange runs), small enough to
read, and it covers exactly what is needed here — BIP32/39/84 keys, bech32 addresses, transaction and
block parsing, PSBT creation, signing and finalizing. bdkpython is a full wallet with its own storage
and chain sync (the exchange wants its own ledger and watcher), and bip-utils has keys and addresses but
no transactions or PSBTs.
"""
