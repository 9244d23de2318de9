"""The wallet: an encrypted keystore (pure format) and a loopback daemon that signs with unlocked keys."""
