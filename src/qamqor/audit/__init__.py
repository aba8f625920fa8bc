"""Verifiable audit log: an append-only RFC 9162 Merkle tree with signed C2SP checkpoints."""
